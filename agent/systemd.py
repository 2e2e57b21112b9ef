"""The systemd unit of the agent, rendered for where the agent is installed (``sotp agent install``).

``deploy/systemd/sotp-agent.service`` is this template rendered for a venv in /opt/sotp (a test keeps the
two identical), so the file in the repository and the one ``sotp agent install`` writes never drift.
"""

from __future__ import annotations

UNIT_NAME = "sotp-agent.service"

_CREDENTIAL = (
    "# The token file stays root-only; systemd copies it into a private credentials directory (%d).\n"
    "LoadCredential=token:/etc/sotp/agent.token\n"
)

TEMPLATE = """# SOTP agent: collects this host's metrics (node_exporter names) and pushes them to the SOTP core over
# Prometheus remote write. Install: docs/agent.md. Settings live in /etc/sotp/agent.env (example beside
# this file); the bearer token in /etc/sotp/agent.token (root-only, handed over as a credential).
[Unit]
Description=SOTP agent (host metrics over remote write)
Documentation=file:/opt/sotp/share/doc/sotp/agent.md
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
Environment=SOTP_INTERVAL=15s
EnvironmentFile=-/etc/sotp/agent.env
{credential}ExecStart={exec_start} --url ${{SOTP_URL}} --interval ${{SOTP_INTERVAL}}{token_arg} $SOTP_AGENT_ARGS
# The on-disk buffer for outages: $STATE_DIRECTORY/buffer (the agent's default under systemd).
StateDirectory=sotp-agent
StateDirectoryMode=0700
Restart=on-failure
RestartSec=5s
# SIGTERM makes the agent flush for up to 5 s, then keep the rest in the buffer for the next start.
TimeoutStopSec=20s

# Hardening: an unprivileged throw-away user, read-only OS, no new privileges or capabilities.
DynamicUser=yes
NoNewPrivileges=yes
ProtectSystem=strict
# read-only, not "yes": an inaccessible /home would hide the real filesystem from statfs
ProtectHome=read-only
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectHostname=yes
CapabilityBoundingSet=
AmbientCapabilities=
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
# adjtimex(2) for node_timex_*: without CAP_SYS_TIME (dropped above) it can only read the clock state, which
# is also why ProtectClock= is not set (it would refuse that read)
SystemCallFilter=adjtimex
SystemCallErrorNumber=EPERM
UMask=0077
# A guard, not a budget: the agent itself stays around 17-20 MB.
MemoryMax=128M

[Install]
WantedBy=multi-user.target
"""


def render(exec_start: str, token: bool = True) -> str:
    """The unit text; ``exec_start`` runs ``sotp agent`` (a venv's script, or python and the zipapp)."""
    return TEMPLATE.format(exec_start=exec_start, credential=_CREDENTIAL if token else "",
                           token_arg=" --token-file %d/token" if token else "")
