"""Build ``sotp-agent.pyz``: the agent (and the host exporter) as one file that needs only ``python3`` (3.11+).

The agent path uses the standard library alone (no psutil, no compiled dependencies), so a zipapp of the
``sotp`` kernel, ``agent`` and ``exporters.host`` packages runs on any Linux server with Python::

    python3 sotp-agent.pyz --url https://core:9201/api/v1/write --token-file /etc/sotp/agent.token
    python3 sotp-agent.pyz install --url https://core:9201/api/v1/write --token-file token.txt   # as root
    python3 sotp-agent.pyz exporter host --listen :9100                                         # pull mode

Usage: python3 deploy/zipapp/build_agent.py [OUTPUT]   (``make agent-zipapp`` writes build/sotp-agent.pyz)
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import zipapp
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# what the agent and the host exporter import; the server-side kernel modules (storage, web) stay out
PACKAGES = ["sotp", "agent", "exporters/host"]
LEAVE_OUT = {"sotp/storage", "sotp/web.py", "sotp/auth.py", "sotp/cli/serve.py", "sotp/cli/db.py",
             "sotp/cli/token.py", "sotp/cli/up.py"}

MAIN = '''"""sotp-agent.pyz: ``python3 sotp-agent.pyz [install|uninstall] [flags]`` runs ``sotp agent``;
``python3 sotp-agent.pyz exporter host [flags]`` runs the host exporter."""
import sys

if sys.version_info < (3, 11):
    sys.exit(f"sotp-agent needs Python 3.11 or newer; this is {sys.version.split()[0]} ({sys.executable})")
from sotp.cli import main

args = sys.argv[1:]
head = []
while args[:1] == ["--log-level"] and len(args) > 1:  # the CLI's global flag goes before the command
    head, args = head + args[:2], args[2:]
sys.exit(main([*head, *(args if args[:1] == ["exporter"] else ["agent", *args])]))
'''


def build(output: Path) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp)
        for pkg in PACKAGES:
            for src in sorted((REPO / pkg).rglob("*.py")):
                rel = src.relative_to(REPO)
                if any(str(rel) == x or str(rel).startswith(x + "/") for x in LEAVE_OUT):
                    continue
                (stage / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, stage / rel)
        (stage / "exporters" / "__init__.py").write_text((REPO / "exporters" / "__init__.py").read_text())
        (stage / "__main__.py").write_text(MAIN)
        output.parent.mkdir(parents=True, exist_ok=True)
        zipapp.create_archive(stage, output, interpreter="/usr/bin/env python3", compressed=True)
    return output


if __name__ == "__main__":
    out = build(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "build" / "sotp-agent.pyz")
    print(f"{out} ({out.stat().st_size // 1024} KiB): run it with python3 {out} --help")
