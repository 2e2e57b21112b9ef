"""SSH device simulators built on asyncssh: a Cisco-IOS-like and a Junos-like CLI that netmiko's
``cisco_ios`` and ``juniper_junos`` drivers talk to unchanged. Each runs in its own thread and event loop,
because netmiko is blocking and the tests call it from worker threads.

The running configuration is mutable (``sim.config``) so tests can change it between backups; each
``show`` prints fresh volatile lines (timestamps, ntp clock-period) as real devices do.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

IOS_CONFIG = """\
version 15.2
service timestamps debug datetime msec
hostname {hostname}
!
enable secret 5 $1$abcd$0123456789abcdefghij
!
interface GigabitEthernet0/1
 description uplink to core
 ip address 10.0.0.1 255.255.255.252
!
interface GigabitEthernet0/2
 description access
 switchport mode access
!
router ospf 1
 network 10.0.0.0 0.0.0.255 area 0
!
end"""

JUNOS_CONFIG = """\
set version 21.4R3
set system host-name {hostname}
set interfaces ge-0/0/0 description "uplink to core"
set interfaces ge-0/0/0 unit 0 family inet address 10.0.1.1/30
set protocols ospf area 0.0.0.0 interface ge-0/0/0.0"""


@dataclass
class DeviceSim:
    """One simulated device on 127.0.0.1:<port>."""

    flavor: str  # "ios" or "junos"
    hostname: str
    username: str = "netops"
    password: str = "s3cret-pass"
    enable_secret: str = "en4ble"
    silent: bool = False  # accept SSH but never print a prompt (a hung device)
    config: str = ""
    port: int = 0
    commands: list[str] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _server: asyncssh.SSHAcceptor | None = None
    _thread: threading.Thread | None = None
    _fetches: int = 0
    _conns: list[asyncssh.SSHServerConnection] = field(default_factory=list)
    _key_path: Path = Path()

    def __post_init__(self) -> None:
        if not self.config:
            template = IOS_CONFIG if self.flavor == "ios" else JUNOS_CONFIG
            self.config = template.format(hostname=self.hostname)

    # -- CLI ---------------------------------------------------------------------------------------

    def _show_config(self) -> str:
        self._fetches += 1
        stamp = time.strftime("%H:%M:%S UTC %a %b %d %Y", time.gmtime()) + f" #{self._fetches}"
        if self.flavor == "ios":
            body = self.config.replace("version 15.2\n", "")
            return (
                "Building configuration...\r\n\r\n"
                f"Current configuration : {len(self.config) + self._fetches} bytes\r\n!\r\n"
                f"! Last configuration change at {stamp} by {self.username}\r\n"
                "version 15.2\r\n"
                f"ntp clock-period {17179000 + self._fetches}\r\n" + body.replace("\n", "\r\n")
            )
        return f"## Last commit: {stamp} by {self.username}\r\n" + self.config.replace("\n", "\r\n")

    async def _commands(self, process: asyncssh.SSHServerProcess[str]) -> AsyncIterator[str]:
        """Each command line the client sends (recorded in ``commands``), until it closes the session."""
        while True:
            try:
                line = await process.stdin.readline()
            except (asyncssh.BreakReceived, asyncssh.TerminalSizeChanged):
                continue
            if not line:
                return
            cmd = line.strip()
            self.commands.append(cmd)
            yield cmd

    async def _ios(self, process: asyncssh.SSHServerProcess[str]) -> None:
        mode = "user"

        def prompt() -> str:
            suffix = {"user": ">", "enable": "#", "config": "(config)#"}[mode]
            return f"{self.hostname}{suffix}"

        process.stdout.write(f"\r\n{prompt()}")
        async for cmd in self._commands(process):
            out = ""
            if cmd in ("exit", "logout") and mode != "config":
                break
            if cmd == "enable":
                process.stdout.write("Password: ")
                process.channel.set_echo(False)
                secret = (await process.stdin.readline()).strip()
                process.channel.set_echo(True)
                if secret == self.enable_secret:
                    mode = "enable"
                    out = "\r\n"
                else:
                    out = "\r\n% Access denied\r\n"
            elif cmd.startswith(("terminal length", "terminal width")) or cmd == "":
                out = ""
            elif cmd in ("show running-config", "show run"):
                out = self._show_config() + "\r\n" if mode != "user" else "% Invalid input detected at '^' marker.\r\n"
            elif cmd == "show version":
                out = f"Cisco IOS Software, C3560 Software, Version 15.2(4)E\r\n{self.hostname} uptime is 5 weeks\r\n"
            elif cmd in ("configure terminal", "conf t") and mode == "enable":
                mode = "config"
                out = "Enter configuration commands, one per line.  End with CNTL/Z.\r\n"
            elif mode == "config":
                if cmd in ("end", "exit"):
                    mode = "enable"
                elif cmd.startswith("hostname "):
                    self.hostname = cmd.split(None, 1)[1]
                else:
                    self.config = self.config.replace("\nend", f"\n{cmd}\nend")
            else:
                out = "% Invalid input detected at '^' marker.\r\n"
            process.stdout.write(out + prompt())
        process.exit(0)

    async def _junos(self, process: asyncssh.SSHServerProcess[str]) -> None:
        prompt = f"{self.username}@{self.hostname}> "
        replies = {
            "set cli screen-width 511": "Screen width set to 511\r\n",
            "set cli complete-on-space off": "Disabling complete-on-space\r\n",
            "set cli screen-length 0": "Screen length set to 0\r\n",
        }
        process.stdout.write(f"\r\n{prompt}")
        async for cmd in self._commands(process):
            if cmd in ("exit", "quit"):
                break
            if cmd in replies:
                out = replies[cmd]
            elif cmd == "show configuration | display set":
                out = self._show_config() + "\r\n"
            elif cmd == "":
                out = ""
            else:
                out = f"error: unknown command: {cmd}\r\n"
            process.stdout.write("\r\n" + out + prompt)
        process.exit(0)

    async def _silent(self, process: asyncssh.SSHServerProcess[str]) -> None:
        await asyncio.sleep(3600)

    # -- server ------------------------------------------------------------------------------------

    def known_hosts_line(self) -> str:
        """This device's entry for an OpenSSH known_hosts file (as ``ssh-keyscan`` would print it)."""
        key = asyncssh.read_private_key(str(self._key_path)).export_public_key("openssh").decode().split()
        return f"[127.0.0.1]:{self.port} {key[0]} {key[1]}\n"

    def start(self, key_dir: Path) -> DeviceSim:
        key_path = self._key_path = key_dir / "sim_host_key"
        if not key_path.exists():
            asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(key_path))
        ready = threading.Event()
        sim = self

        class Server(asyncssh.SSHServer):
            def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
                sim._conns.append(conn)

            def begin_auth(self, username: str) -> bool:
                return True

            def password_auth_supported(self) -> bool:
                return True

            def validate_password(self, username: str, password: str) -> bool:
                return username == sim.username and password == sim.password

        async def main() -> None:
            handler = {"ios": self._ios, "junos": self._junos}[self.flavor]
            self._server = await asyncssh.create_server(
                Server, "127.0.0.1", 0, server_host_keys=[str(key_path)],
                process_factory=self._silent if self.silent else handler, encoding="utf-8",
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()

        def thread_main() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(main())
            self._loop.run_forever()

        self._thread = threading.Thread(target=thread_main, daemon=True, name=f"devsim-{self.hostname}")
        self._thread.start()
        if not ready.wait(10):
            raise TimeoutError("device simulator did not start")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return

        async def close() -> None:
            assert self._server is not None
            self._server.close()
            await self._server.wait_closed()
            for conn in self._conns:
                conn.close()
                await conn.wait_closed()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(10)
        self._loop.close()
