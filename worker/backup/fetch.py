"""Fetching a configuration over SSH with netmiko, behind a one-method seam so tests and other
transports can stand in. netmiko is blocking: each fetch runs in a worker thread. Host keys are checked
strictly against ``backup.known_hosts`` (:mod:`worker.backup.hostkeys`)."""

from __future__ import annotations

import asyncio
import socket
from typing import Protocol

from sotp.config import resolve_secret
from sotp.errors import SotpError
from worker.backup.config import Device
from worker.backup.hostkeys import host_entry, learn_host_key
from worker.backup.platforms import platform_for


class BackupFailed(SotpError):
    """A device could not be backed up. ``reason`` is a short metric-safe word; the message never holds secrets."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class Fetcher(Protocol):
    async def fetch(self, device: Device, timeout_s: float) -> str:
        """The device's configuration text, or :class:`BackupFailed`."""
        ...


def command_for(device: Device) -> str:
    return device.command or platform_for(device.device_type).command


def _socket_cause(err: BaseException) -> OSError | None:
    """The socket error behind an exception (netmiko raises its own from inside ``except socket.error``)."""
    seen: BaseException | None = err.__cause__ or err.__context__
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _connect_failed(where: str, err: OSError, timeout_s: float) -> BackupFailed:
    """A connection error named for what happened: refused, timed out, name not resolved, unreachable."""
    # paramiko's NoValidConnectionsError holds one error per address tried (IPv4, IPv6) in ``errors``.
    tried = [e for e in getattr(err, "errors", {}).values() if isinstance(e, OSError)]
    if tried and all(isinstance(e, ConnectionRefusedError) for e in tried):
        err = tried[0]
    if isinstance(err, ConnectionRefusedError):
        return BackupFailed(f"cannot back up {where}: connection refused (is SSH listening on that port?)", "refused")
    if isinstance(err, TimeoutError):
        return BackupFailed(f"cannot back up {where}: timed out after {timeout_s:g}s (backup.timeout)", "timeout")
    if isinstance(err, socket.gaierror):
        return BackupFailed(f"cannot back up {where}: host name not resolved ({err.strerror or err})", "dns")
    return BackupFailed(f"cannot back up {where}: {err.strerror or err}", "unreachable")


def _fetch_sync(device: Device, timeout_s: float, known_hosts: str, accept_new: bool) -> str:
    import paramiko
    from netmiko import ConnectHandler
    from netmiko.exceptions import NetmikoAuthenticationException, NetmikoTimeoutException, ReadTimeout

    params: dict[str, object] = {
        "device_type": device.device_type,
        "host": device.host,
        "port": device.port,
        "username": device.username,
        "conn_timeout": timeout_s,
        "auth_timeout": timeout_s,
        "banner_timeout": timeout_s,
        "read_timeout_override": timeout_s,
        "fast_cli": False,
        # Strict host key checking: netmiko's default accepts any key (paramiko's AutoAddPolicy).
        "ssh_strict": True,
        "system_host_keys": False,
        "alt_host_keys": True,
        "alt_key_file": known_hosts,
    }
    if device.password:
        params["password"] = resolve_secret(device.password, f"backup.devices[{device.name}].password")
    if device.secret:
        params["secret"] = resolve_secret(device.secret, f"backup.devices[{device.name}].secret")
    if device.key_file:
        params["use_keys"] = True
        params["key_file"] = device.key_file
        params["allow_agent"] = False
    where = f"{device.name} ({device.host}:{device.port})"
    entry = host_entry(device.host, device.port)
    try:
        if accept_new:
            learn_host_key(known_hosts, device.host, device.port, timeout_s)
        with ConnectHandler(**params) as conn:
            if device.secret:
                conn.enable()
            output = str(conn.send_command(command_for(device), read_timeout=timeout_s))
    except NetmikoAuthenticationException as err:
        msg = f"cannot back up {where}: authentication failed for user {device.username!r}"
        raise BackupFailed(msg, "auth") from err
    except (NetmikoTimeoutException, ReadTimeout, paramiko.SSHException) as err:
        # netmiko reports every SSHException of the handshake, host key refusals included, and every socket
        # error while connecting, as a timeout: the exception it caught tells what happened.
        cause = _root_cause(err)
        if isinstance(cause, paramiko.BadHostKeyException):
            msg = (f"cannot back up {where}: its SSH host key does not match the one in {known_hosts} (a replaced "
                   "device, or someone posing as it): check the device, then remove the old line "
                   f"(ssh-keygen -R '{entry}' -f {known_hosts})")
            raise BackupFailed(msg, "hostkey") from err
        if isinstance(cause, paramiko.SSHException) and "not found in known_hosts" in str(cause):
            msg = (f"cannot back up {where}: its SSH host key is not in {known_hosts}: verify and add it "
                   f"(ssh-keyscan -p {device.port} {device.host} >> {known_hosts}), or set "
                   "backup.host_key_checking: accept-new to trust it on first contact")
            raise BackupFailed(msg, "hostkey") from err
        sock = _socket_cause(err)
        if sock is not None:  # refused or unroutable: immediate, not a timeout
            raise _connect_failed(where, sock, timeout_s) from err
        if isinstance(err, NetmikoTimeoutException | ReadTimeout):
            msg = f"cannot back up {where}: timed out after {timeout_s:g}s (backup.timeout)"
            raise BackupFailed(msg, "timeout") from err
        raise BackupFailed(f"cannot back up {where}: SSH failed ({type(err).__name__})", "session") from err
    except OSError as err:
        raise _connect_failed(where, err, timeout_s) from err
    except (ValueError, EOFError) as err:  # netmiko raises ValueError when it cannot find the prompt
        raise BackupFailed(f"cannot back up {where}: unexpected session ({type(err).__name__})", "session") from err
    except Exception as err:  # paramiko's SSHException family: only the type, its text may echo device output
        raise BackupFailed(f"cannot back up {where}: SSH failed ({type(err).__name__})", "session") from err
    return output.lstrip("\n")


def _root_cause(err: BaseException) -> BaseException:
    """The innermost exception ``err`` was raised from or while handling."""
    seen = {id(err)}
    while True:
        inner = err.__cause__ or err.__context__
        if inner is None or id(inner) in seen:
            return err
        seen.add(id(inner))
        err = inner


class NetmikoFetcher:
    """The production fetcher: netmiko with host keys checked against ``known_hosts``."""

    def __init__(self, known_hosts: str, accept_new: bool = False) -> None:
        self.known_hosts = known_hosts
        self.accept_new = accept_new

    async def fetch(self, device: Device, timeout_s: float) -> str:
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(_fetch_sync, device, timeout_s, self.known_hosts, self.accept_new), timeout_s * 4
            )
        except TimeoutError as err:
            raise BackupFailed(
                f"cannot back up {device.name} ({device.host}:{device.port}): no answer within {timeout_s * 4:g}s",
                "timeout",
            ) from err
