"""Fetching a configuration over SSH with netmiko, behind a one-method seam so tests and other
transports can stand in. netmiko is blocking: each fetch runs in a worker thread."""

from __future__ import annotations

import asyncio
import socket
from typing import Protocol

from sotp.config import resolve_secret
from sotp.errors import SotpError
from worker.backup.config import Device
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


def _fetch_sync(device: Device, timeout_s: float) -> str:
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
    try:
        with ConnectHandler(**params) as conn:
            if device.secret:
                conn.enable()
            output = str(conn.send_command(command_for(device), read_timeout=timeout_s))
    except NetmikoAuthenticationException as err:
        msg = f"cannot back up {where}: authentication failed for user {device.username!r}"
        raise BackupFailed(msg, "auth") from err
    except (NetmikoTimeoutException, ReadTimeout) as err:
        # netmiko reports every socket error while connecting as a timeout; the OSError it caught tells
        # a refused or unroutable connection (immediate) from a real timeout.
        cause = _socket_cause(err)
        if cause is not None:
            raise _connect_failed(where, cause, timeout_s) from err
        msg = f"cannot back up {where}: timed out after {timeout_s:g}s (backup.timeout)"
        raise BackupFailed(msg, "timeout") from err
    except OSError as err:
        raise _connect_failed(where, err, timeout_s) from err
    except (ValueError, EOFError) as err:  # netmiko raises ValueError when it cannot find the prompt
        raise BackupFailed(f"cannot back up {where}: unexpected session ({type(err).__name__})", "session") from err
    except Exception as err:  # paramiko's SSHException family: only the type, its text may echo device output
        raise BackupFailed(f"cannot back up {where}: SSH failed ({type(err).__name__})", "session") from err
    return output.lstrip("\n")


class NetmikoFetcher:
    """The production fetcher."""

    async def fetch(self, device: Device, timeout_s: float) -> str:
        try:
            return await asyncio.wait_for(asyncio.to_thread(_fetch_sync, device, timeout_s), timeout_s * 4)
        except TimeoutError as err:
            raise BackupFailed(
                f"cannot back up {device.name} ({device.host}:{device.port}): no answer within {timeout_s * 4:g}s",
                "timeout",
            ) from err
