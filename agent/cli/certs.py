"""Admin and monitoring certificates issued through this node's daemon."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent import control
from agent.paths import DataDir

__all__ = ["issue_cert"]


def issue_cert(data: DataDir, role: str, out: Path, lifetime_s: int | None = None) -> Any:
    """Ask the leader for a `role` certificate; its key, certificate and CA go to `out`."""
    from certs import key_to_pem, make_csr, new_private_key, write_file_atomic

    key = new_private_key()
    args: dict[str, Any] = {"role": role, "csr": make_csr(key).decode()}
    if lifetime_s is not None:
        args["lifetime_s"] = lifetime_s
    res = control.call(data.socket, "cert-issue", args)
    out.mkdir(parents=True, exist_ok=True)
    write_file_atomic(out / "key.pem", key_to_pem(key), 0o600)
    write_file_atomic(out / "cert.pem", res["cert"].encode(), 0o644)
    write_file_atomic(out / "ca.pem", res["ca"].encode(), 0o644)
    return res
