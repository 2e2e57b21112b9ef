"""SSH host keys of the backed-up devices: an OpenSSH ``known_hosts`` file, checked strictly.

netmiko accepts any host key by default (paramiko's ``AutoAddPolicy``), so anyone on the path could pose
as a router and collect the backup account's password and enable secret. SOTP connects with paramiko's
``RejectPolicy`` against ``backup.known_hosts`` instead: a device whose key is missing or different is
not contacted further (``BackupFailed`` with reason ``hostkey``).

``backup.host_key_checking: accept-new`` is OpenSSH's ``StrictHostKeyChecking=accept-new`` (trust on first
use): before the first connection to a device that has no entry, its key is fetched and appended to the
file (logged with its SHA-256 fingerprint); a key that *changed* is still refused. Entries are written as
OpenSSH does: ``host`` for port 22, ``[host]:port`` otherwise, so ``ssh-keyscan`` output works as is.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import logging
import os
from pathlib import Path

log = logging.getLogger("sotp.backup")


def host_entry(host: str, port: int) -> str:
    """The name a known_hosts line uses for ``host:port``."""
    return host if port == 22 else f"[{host}]:{port}"


def fingerprint(key_blob: bytes) -> str:
    """``SHA256:...`` as ``ssh-keygen -l`` prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key_blob).digest()).decode().rstrip("=")


def is_known(path: str, host: str, port: int) -> bool:
    """Whether ``path`` holds a key for ``host:port`` (hashed entries included)."""
    import paramiko

    if not os.path.isfile(path):
        return False
    try:
        keys = paramiko.HostKeys(path)
    except (OSError, paramiko.SSHException):
        return False
    return keys.lookup(host_entry(host, port)) is not None


def learn_host_key(path: str, host: str, port: int, timeout_s: float) -> None:
    """Trust on first use: fetch the key of a device ``path`` does not know and append it.

    Called only for ``accept-new``; a device already in the file is left to the strict check, so a changed
    key is refused there. Several devices are fetched in threads at once: the file is appended under a lock.
    """
    import paramiko

    if is_known(path, host, port):
        return
    transport = paramiko.Transport((host, port))
    try:
        transport.banner_timeout = timeout_s
        transport.start_client(timeout=timeout_s)
        key = transport.get_remote_server_key()
    finally:
        transport.close()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        if not is_known(path, host, port):  # another thread may have learnt it meanwhile
            fh.write(f"{host_entry(host, port)} {key.get_name()} {key.get_base64()}\n")
            log.warning("backup: trusting the SSH host key of %s on first contact: %s %s, added to %s "
                        "(backup.host_key_checking: accept-new)", host_entry(host, port), key.get_name(),
                        fingerprint(key.asbytes()), path)


__all__ = ["fingerprint", "host_entry", "is_known", "learn_host_key"]
