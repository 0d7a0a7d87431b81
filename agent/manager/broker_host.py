"""The manager that hosts the embedded broker keeps its files in step with cluster state."""

from __future__ import annotations

import os
import pwd
import shutil
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from broker.mosquitto_conf import (
    BrokerFiles,
    ListenSpec,
    render_cluster_acl,
    render_config,
    render_enroll_acl,
)
from broker.topics import Topics
from certs import ClusterCA, key_to_pem, new_private_key, write_file_atomic

__all__ = ["BrokerHost", "broker_user"]


def _reachable_by(path: Path, uid: int, gid: int) -> bool:
    """Whether a user can traverse every directory above `path`."""
    for parent in path.resolve().parents:
        st = parent.stat()
        if st.st_uid == uid:
            ok = st.st_mode & 0o100
        elif st.st_gid == gid:
            ok = st.st_mode & 0o010
        else:
            ok = st.st_mode & 0o001
        if not ok:
            return False
    return True


def broker_user(directory: Path) -> str:
    """The user mosquitto runs as: the unprivileged 'mosquitto' user when started as root,
    that user exists and it can reach the broker's directory; else the current user."""
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("mosquitto")
        except KeyError:
            return "root"
        return "mosquitto" if _reachable_by(directory, pw.pw_uid, pw.pw_gid) else "root"
    return pwd.getpwuid(os.geteuid()).pw_name


class BrokerHost:
    def __init__(self, directory: Path, cluster_id: str, listen: ListenSpec) -> None:
        self.files = BrokerFiles(directory)
        self.listen = listen
        self.topics = Topics(cluster_id)
        self.user = broker_user(directory)

    def _write(self, path: Path, data: bytes, mode: int = 0o640) -> None:
        write_file_atomic(path, data, mode)
        self._own(path)

    def _own(self, path: Path) -> None:
        if os.geteuid() == 0 and self.user != "root":
            pw = pwd.getpwnam(self.user)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def create(self, ca: ClusterCA, server_hosts: list[str]) -> None:
        """Write everything the broker needs, including a new server certificate."""
        d = self.files.directory
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o750)
        self._own(d)
        self.files.persistence.mkdir(exist_ok=True)
        self._own(self.files.persistence)
        key = new_private_key()
        cert = ca.issue_server_cert(key, server_hosts)
        self._write(self.files.server_key, key_to_pem(key), 0o600)
        self._write(self.files.server_chain, cert + ca.cert_pem)
        self._write(self.files.ca, ca.cert_pem, 0o644)
        self._write(self.files.enroll_acl, render_enroll_acl().encode())
        self._write(
            self.files.config, render_config(self.files, self.listen, user=self.user).encode()
        )
        if not self.files.log.exists():
            self.files.log.touch(0o640)
        self._own(self.files.log)

    def sync_from(
        self,
        ca: ClusterCA,
        *,
        managers: list[str],
        admins: list[str],
        monitors: list[str],
        revoked: list[tuple[int, datetime]],
        nodes: Sequence[str] = (),
        discovery_prefix: str | None = None,
    ) -> None:
        """Rewrite the ACL and CRL (then reload the broker)."""
        acl = render_cluster_acl(
            self.topics,
            managers=managers,
            nodes=nodes,
            admins=admins,
            monitors=monitors,
            discovery_prefix=discovery_prefix,
        )
        self._write(self.files.cluster_acl, acl.encode())
        self._write(self.files.crl, ca.build_crl(revoked))

    def remove(self) -> None:
        shutil.rmtree(self.files.directory, ignore_errors=True)
