"""``sotp agent install`` and ``sotp agent uninstall``: the hardened systemd unit, its settings and token.

Install writes three files (each only when its content changes, so running it twice changes nothing):

* ``/etc/systemd/system/sotp-agent.service`` — :mod:`agent.systemd` rendered for how this agent runs: the
  venv's interpreter with ``-m sotp agent``, or, from the single-file zipapp, ``python3`` and a copy of the
  zipapp in ``/usr/local/lib/sotp/sotp-agent.pyz`` (readable by the unit's throw-away user);
* ``/etc/sotp/agent.env`` — ``SOTP_URL``, ``SOTP_INTERVAL`` and ``SOTP_AGENT_ARGS`` (any other agent flags);
* ``/etc/sotp/agent.token`` (mode 0600) — a copy of ``--token-file``, handed to the unit as a credential;

then ``systemctl daemon-reload`` and ``systemctl enable --now`` (``restart`` when a file changed). With
``--root DIR`` everything goes under DIR and ``systemctl --root=DIR enable`` only links the unit (an image
being built, or a test). Uninstall disables and stops the unit and removes what install wrote; the outage
buffer in /var/lib/private/sotp-agent stays unless ``--purge``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shlex
import sys
from pathlib import Path

from agent.systemd import UNIT_NAME, render
from sotp.errors import ConfigError

log = logging.getLogger("agent.install")

UNIT = "etc/systemd/system/" + UNIT_NAME
ENV = "etc/sotp/agent.env"
TOKEN = "etc/sotp/agent.token"
ZIPAPP = "usr/local/lib/sotp/sotp-agent.pyz"
STATE = ("var/lib/private/sotp-agent", "var/lib/sotp-agent")


def configure_install(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True, help="remote-write URL of the core (http:// or https://)")
    parser.add_argument("--token-file", help="bearer token to copy to /etc/sotp/agent.token (scope write)")
    parser.add_argument("--interval", default="15s", help="collection interval (default 15s)")
    parser.add_argument("--agent-args", default="",
                        help="other `sotp agent` flags for the service, as one string "
                             "(e.g. '--label env=prod --collector.textfile.directory=/var/lib/sotp/textfile')")
    parser.add_argument("--root", default="/", help="install under this directory instead of / (no start)")
    parser.add_argument("--no-start", action="store_true", help="write and enable the unit, do not (re)start it")


def configure_uninstall(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default="/", help="the directory install used")
    parser.add_argument("--purge", action="store_true", help="also delete the outage buffer (unsent data)")


def running_from_zipapp() -> Path | None:
    """The zipapp this process runs from, if any (``python3 sotp-agent.pyz ...``)."""
    main = sys.modules.get("__main__")
    loader = getattr(main, "__loader__", None)
    archive = getattr(loader, "archive", None)
    return Path(archive).resolve() if archive else None


def exec_start() -> tuple[str, Path | None]:
    """The ExecStart command, and the zipapp to copy into place (None for an installed package). The
    interpreter path is kept as is: a venv's ``bin/python`` is what makes ``-m sotp`` importable."""
    python = sys.executable
    zipapp = running_from_zipapp()
    if zipapp is not None:
        return f"{python} /{ZIPAPP}", zipapp
    if str(python).startswith(("/root/", "/home/")):
        log.warning("the agent runs from %s: the unit's throw-away user cannot read a home directory; install SOTP "
                    "in /opt (python3 -m venv /opt/sotp) or use the zipapp (make agent-zipapp)", python)
    return f"{python} -m sotp agent", None


def _validate(args: argparse.Namespace) -> list[str]:
    if not args.url.startswith(("http://", "https://")):
        raise ConfigError(f"--url {args.url!r}: use http://host:port/api/v1/write or https://...")
    try:
        extra = shlex.split(args.agent_args)
    except ValueError as err:
        raise ConfigError(f"--agent-args: {err}") from err
    spaced = [a for a in extra if any(c.isspace() for c in a)]
    if spaced:  # systemd splits $SOTP_AGENT_ARGS at every blank and honours no quotes
        raise ConfigError(f"--agent-args: {spaced[0]!r} contains a blank, which the unit's $SOTP_AGENT_ARGS cannot "
                          "carry; use values without blanks")
    from agent.cli import configure_parser, settings  # the service's flags must be right now, not at boot

    probe = argparse.ArgumentParser(prog="sotp agent", exit_on_error=False)
    configure_parser(probe)
    try:
        service_args, unknown = probe.parse_known_args(["--url", args.url, "--interval", args.interval, *extra])
    except argparse.ArgumentError as err:
        raise ConfigError(f"--agent-args {args.agent_args!r}: {err}") from None
    if unknown:
        raise ConfigError(f"--agent-args: unknown `sotp agent` flag(s) {' '.join(unknown)} (see sotp agent --help)")
    if service_args.action is not None:
        raise ConfigError(f"--agent-args {args.agent_args!r}: give flags only")
    settings(service_args)
    return extra


def _write(path: Path, data: bytes, mode: int) -> bool:
    """Write ``data`` atomically when it differs; True when the file changed."""
    try:
        if path.read_bytes() == data and (path.stat().st_mode & 0o777) == mode:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True


def _env_file(args: argparse.Namespace, extra: list[str]) -> bytes:
    return (
        "# /etc/sotp/agent.env: settings of sotp-agent.service, written by `sotp agent install`.\n"
        f"SOTP_URL={args.url}\n"
        f"SOTP_INTERVAL={args.interval}\n"
        f"SOTP_AGENT_ARGS={shlex.join(extra)}\n"
    ).encode()


def _systemctl(root: Path, *argv: str) -> None:
    import subprocess  # here, not at the top: `sotp agent` imports this module and runs no command

    cmd = ["systemctl", *([f"--root={root}"] if str(root) != "/" else []), *argv]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as err:
        raise ConfigError(f"cannot run {' '.join(cmd)}: {err}") from err
    if r.returncode != 0:
        raise ConfigError(f"{' '.join(cmd)} failed: {(r.stderr or r.stdout).strip()}")


def install(args: argparse.Namespace) -> int:
    root = Path(args.root)
    extra = _validate(args)
    token = None
    if args.token_file:
        try:
            token = Path(args.token_file).read_bytes()
        except OSError as err:
            raise ConfigError(f"cannot read --token-file {args.token_file}: {err.strerror}") from err
        if not token.strip():
            raise ConfigError(f"--token-file {args.token_file} is empty")
    command, zipapp = exec_start()
    changed = []
    if zipapp is not None and _write(root / ZIPAPP, zipapp.read_bytes(), 0o644):
        changed.append("/" + ZIPAPP)
    if token is not None and _write(root / TOKEN, token, 0o600):
        changed.append("/" + TOKEN)
    if _write(root / ENV, _env_file(args, extra), 0o644):
        changed.append("/" + ENV)
    if _write(root / UNIT, render(command, token=token is not None).encode(), 0o644):
        changed.append("/" + UNIT)
    print(f"sotp agent install: {', '.join(changed) + ' written' if changed else 'nothing changed'}")
    if str(root) != "/":
        _systemctl(root, "enable", UNIT_NAME)
        print(f"enabled {UNIT_NAME} under {root} (not started: --root)")
        return 0
    _systemctl(root, "daemon-reload")
    _systemctl(root, "enable", UNIT_NAME)
    if not args.no_start:
        _systemctl(root, "restart" if changed else "start", UNIT_NAME)
        print(f"{UNIT_NAME} is running; logs: journalctl -u {UNIT_NAME}")
    return 0


def uninstall(args: argparse.Namespace) -> int:
    root = Path(args.root)
    if (root / UNIT).exists():
        if str(root) == "/":
            _systemctl(root, "disable", "--now", UNIT_NAME)
        else:
            _systemctl(root, "disable", UNIT_NAME)
    removed = []
    for rel in (UNIT, ENV, TOKEN, ZIPAPP):
        path = root / rel
        if path.exists() or path.is_symlink():
            path.unlink()
            removed.append("/" + rel)
    for rel in ("etc/sotp", "usr/local/lib/sotp"):  # the directories install created, once empty
        with contextlib.suppress(OSError):  # not empty, or not there
            (root / rel).rmdir()
    if args.purge:
        for rel in STATE:
            if (root / rel).is_dir():
                import shutil  # ~0.5 MB of RSS the running agent does not need

                shutil.rmtree(root / rel)
                removed.append("/" + rel)
    if str(root) == "/" and removed:
        _systemctl(root, "daemon-reload")
    print(f"sotp agent uninstall: {', '.join(removed) + ' removed' if removed else 'nothing to remove'}")
    return 0
