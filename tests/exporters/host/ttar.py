"""Extract a ``ttar`` archive (the plain-text tree format node_exporter and procfs keep their sysfs
fixtures in): ``Directory:``/``Path:`` headers, ``Lines: N`` of content (a trailing ``EOF`` marks a
missing final newline, ``NULLBYTE`` a zero byte), ``SymlinkTo:`` for links, ``Mode:`` after each entry."""

from __future__ import annotations

import os
from pathlib import Path


def extract(archive: Path, dest: Path) -> None:
    lines = archive.read_bytes().decode("latin-1").split("\n")  # binary-safe: sysfs has raw bytes
    i = 0
    path: Path | None = None
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(": ")
        if key == "Directory":
            path = dest / value
            path.mkdir(parents=True, exist_ok=True)
        elif key == "Path":
            path = dest / value
            path.parent.mkdir(parents=True, exist_ok=True)
        elif key == "Lines":
            assert path is not None
            body = lines[i : i + int(value)]
            i += int(value)
            text = "".join(b + "\n" for b in body)
            if text.endswith("EOF\n"):
                text = text[: -len("EOF\n")]
            path.write_bytes(text.replace("NULLBYTE", "\0").encode("latin-1"))
        elif key == "SymlinkTo":
            assert path is not None
            os.symlink(value, path)
        elif key == "Mode":
            assert path is not None
            if not path.is_symlink():
                path.chmod(int(value, 8) | 0o600)  # keep it writable so the tmp dir can be removed
        else:
            raise ValueError(f"{archive}: unexpected ttar line {line!r}")
