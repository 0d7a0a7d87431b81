"""Issued certificates work with OpenSSL, the TLS stack mosquitto and aiomqtt sit on."""

import shutil
import ssl
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from certs import (
    ClusterCA,
    Role,
    load_cert,
    make_csr,
    new_node_id,
    new_private_key,
    write_private_key,
)


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """A CA, a broker certificate, a worker certificate and a CRL revoking nothing, on disk."""
    ca = ClusterCA.create("k3v9x2m7q8w1e5r4t6y0u2i3o")
    ca.save(tmp_path)
    server_key = new_private_key()
    write_private_key(tmp_path / "server-key.pem", server_key)
    (tmp_path / "server.pem").write_bytes(
        ca.issue_server_cert(server_key, ["broker.local", "127.0.0.1"])
    )
    for name in ("worker", "revoked"):
        key = new_private_key()
        write_private_key(tmp_path / f"{name}-key.pem", key)
        (tmp_path / f"{name}.pem").write_bytes(
            ca.issue(make_csr(key), node_id=new_node_id(), role=Role.WORKER)
        )
    revoked = load_cert((tmp_path / "revoked.pem").read_bytes()).serial_number
    (tmp_path / "crl.pem").write_bytes(ca.build_crl([(revoked, datetime.now(UTC))]))
    return tmp_path


def handshake(pki: Path, client_name: str, *, crl: bool = False) -> dict[str, Any]:
    """Run a mutual TLS handshake in memory; return the client certificate the server saw."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(pki / "server.pem", pki / "server-key.pem")
    server_ctx.load_verify_locations(pki / "ca.pem")
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    if crl:
        server_ctx.load_verify_locations(pki / "crl.pem")
        server_ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(pki / "ca.pem")
    client_ctx.load_cert_chain(pki / f"{client_name}.pem", pki / f"{client_name}-key.pem")

    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    from_server, from_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server_ctx.wrap_bio(to_server, from_server, server_side=True)
    client = client_ctx.wrap_bio(to_client, from_client, server_hostname="broker.local")
    done = {"client": False, "server": False}
    for _ in range(10):
        for side, conn in (("client", client), ("server", server)):
            if not done[side]:
                try:
                    conn.do_handshake()
                    done[side] = True
                except ssl.SSLWantReadError:
                    pass
        to_server.write(from_client.read())
        to_client.write(from_server.read())
        if all(done.values()):
            break
    assert all(done.values())
    peer = server.getpeercert()
    assert peer is not None
    return dict(peer)


def test_a_worker_and_the_broker_complete_a_mutual_tls_handshake(pki: Path) -> None:
    peer = handshake(pki, "worker")
    subject = {key: value for ((key, value),) in peer["subject"]}
    assert subject["organizationalUnitName"] == "shoal-worker"


def test_the_broker_refuses_a_revoked_worker_when_it_checks_the_crl(pki: Path) -> None:
    handshake(pki, "revoked")  # no CRL check: accepted
    with pytest.raises(ssl.SSLError, match="revoked"):
        handshake(pki, "revoked", crl=True)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl command not installed")
def test_openssl_verify_accepts_the_issued_certificates(pki: Path) -> None:
    result = subprocess.run(
        ["openssl", "verify", "-CAfile", "ca.pem", "server.pem", "worker.pem"],
        cwd=pki,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["server.pem: OK", "worker.pem: OK"]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl command not installed")
def test_openssl_verify_with_the_crl_refuses_the_revoked_certificate(pki: Path) -> None:
    result = subprocess.run(
        [
            "openssl",
            "verify",
            "-crl_check",
            "-CRLfile",
            "crl.pem",
            "-CAfile",
            "ca.pem",
            "revoked.pem",
        ],
        cwd=pki,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "certificate revoked" in result.stdout + result.stderr
