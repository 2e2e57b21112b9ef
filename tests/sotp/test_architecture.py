"""The layering rules of DESIGN.md, checked on the source: the kernel never imports a component."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

COMPONENTS = {"exporters", "remote_write", "query", "worker", "agent", "dashboards", "rules"}


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


KERNEL_FILES = sorted(p for p in (REPO / "sotp").rglob("*.py") if "cli" not in p.relative_to(REPO / "sotp").parts)


@pytest.mark.parametrize("path", KERNEL_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_kernel_module_imports_no_component(path: Path) -> None:
    assert imported_top_levels(path) & COMPONENTS == set()


def test_cli_maps_every_command_to_an_existing_module() -> None:
    import importlib.util

    from sotp.cli import COMMANDS, EXPORTERS

    for name, cmd in {**COMMANDS, **EXPORTERS}.items():
        assert importlib.util.find_spec(cmd.module) is not None, f"{name} -> {cmd.module} missing"


def test_top_level_help_lists_commands_without_importing_components() -> None:
    code = (
        "import sys; from sotp.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{sorted(COMPONENTS)!r} or m.split('.')[0] in ('aiohttp', 'psycopg', 'streamlit'))\n"
        "print('LOADED', bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert "serve" in out and "agent" in out
    assert "LOADED []" in out
