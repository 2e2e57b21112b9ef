"""/proc/net/rpc/nfs (client) and /proc/net/rpc/nfsd (server) as procfs 0.8 parses them: one line per
kind (``net``, ``rpc``, ``proc3``...), each a list of unsigned integers, ``procN`` lines starting with their
own count. Lines a kernel does not print read as zeros."""

from __future__ import annotations

V2 = ("Null", "GetAttr", "SetAttr", "Root", "Lookup", "ReadLink", "Read", "WrCache", "Write", "Create", "Remove",
      "Rename", "Link", "SymLink", "MkDir", "RmDir", "ReadDir", "FsStat")
V3 = ("Null", "GetAttr", "SetAttr", "Lookup", "Access", "ReadLink", "Read", "Write", "Create", "MkDir", "SymLink",
      "MkNod", "Remove", "RmDir", "Rename", "Link", "ReadDir", "ReadDirPlus", "FsStat", "FsInfo", "PathConf", "Commit")
CLIENT_V4 = ("Null", "Read", "Write", "Commit", "Open", "OpenConfirm", "OpenNoattr", "OpenDowngrade", "Close",
             "Setattr", "FsInfo", "Renew", "SetClientID", "SetClientIDConfirm", "Lock", "Lockt", "Locku", "Access",
             "Getattr", "Lookup", "LookupRoot", "Remove", "Rename", "Link", "Symlink", "Create", "Pathconf", "StatFs",
             "ReadLink", "ReadDir", "ServerCaps", "DelegReturn", "GetACL", "SetACL", "FsLocations",
             "ReleaseLockowner", "Secinfo", "FsidPresent", "ExchangeID", "CreateSession", "DestroySession",
             "Sequence", "GetLeaseTime", "ReclaimComplete", "LayoutGet", "GetDeviceInfo", "LayoutCommit",
             "LayoutReturn", "SecinfoNoName", "TestStateID", "FreeStateID", "GetDeviceList", "BindConnToSession",
             "DestroyClientID", "Seek", "Allocate", "DeAllocate", "LayoutStats", "Clone")
V4_OPS = ("Op0Unused", "Op1Unused", "Op2Future", "Access", "Close", "Commit", "Create", "DelegPurge", "DelegReturn",
          "GetAttr", "GetFH", "Link", "Lock", "Lockt", "Locku", "Lookup", "LookupRoot", "Nverify", "Open", "OpenAttr",
          "OpenConfirm", "OpenDgrd", "PutFH", "PutPubFH", "PutRootFH", "Read", "ReadDir", "ReadLink", "Remove",
          "Rename", "Renew", "RestoreFH", "SaveFH", "SecInfo", "SetAttr", "Verify", "Write", "RelLockOwner")

# line -> (exact count of values, or None for a counted "procN" line with this minimum)
_CLIENT = {"net": 4, "rpc": 3}
_SERVER = {"rc": 3, "fh": 5, "io": 2, "th": 2, "ra": 12, "net": 4, "rpc": 5}


def _uints(parts: list[str], line: str) -> list[int]:
    if not all(p.isdigit() for p in parts):
        raise ValueError(f"error parsing NFS metric line: {line!r}")
    return [int(p) for p in parts]


def _procedures(kind: str, values: list[int], names: tuple[str, ...], line: str,
                exact: bool = False) -> dict[str, int]:
    count = values[0]
    short_client_v4 = names is CLIENT_V4 and len(values) - 1 == count  # procfs pads a short client v4 line
    if (len(values) - 1 != count or (count != len(names) if exact else count < len(names))) and not short_client_v4:
        raise ValueError(f"invalid {kind} line {line!r}")
    padded = values[1:] + [0] * len(names)
    return dict(zip(names, padded, strict=False))


def parse(text: str, server: bool) -> dict[str, dict[str, int] | list[int]]:
    """``{"net": [...], "rpc": [...], "proc3": {"GetAttr": n, ...}, ...}``. Raises ValueError."""
    out: dict[str, dict[str, int] | list[int]] = {}
    sizes = _SERVER if server else _CLIENT
    procs = {"proc2": V2, "proc3": V3, **({"proc4": ("Null", "Compound"), "proc4ops": V4_OPS} if server
                                          else {"proc4": CLIENT_V4})}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2:
            raise ValueError(f"invalid NFS metric line {line!r}")
        kind = parts[0]
        if server and kind == "th":
            if len(parts) < 3:
                raise ValueError(f"invalid NFSd th metric line {line!r}")
            parts = parts[:3]
        values = _uints(parts[1:], line)
        if kind in sizes:
            if len(values) != sizes[kind]:
                raise ValueError(f"invalid {kind} line {line!r}")
            out[kind] = values
        elif kind in procs:
            out[kind] = _procedures(kind, values, procs[kind], line, exact=server and kind == "proc4")
        else:
            raise ValueError(f"unknown NFS metric line {kind!r}")
    return out


def values(stats: dict[str, dict[str, int] | list[int]], kind: str, size: int) -> list[int]:
    v = stats.get(kind, [0] * size)
    assert isinstance(v, list)
    return v


def procedures(stats: dict[str, dict[str, int] | list[int]], kind: str) -> dict[str, int]:
    v = stats.get(kind, {})
    assert isinstance(v, dict)
    return v
