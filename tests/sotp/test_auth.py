"""sotp.auth: token store (hashed, revocable, reloaded on change), header parsing, scopes, loopback rule, CLI."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from sotp.auth import (
    AuthConfig,
    Principal,
    ScopeError,
    TokenStore,
    auth_enabled,
    auth_required,
    challenge_headers,
    check,
    extract_token,
    hash_token,
    is_loopback_listen,
    parse_tenant,
)
from sotp.config import Config, from_dict
from sotp.errors import AuthError, ConfigError
from tests.conftest import REPO, sotp_cmd


def bearer(token: str) -> str:
    return f"Bearer {token}"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_token_is_stored_hashed_with_private_permissions(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "sub" / "tokens.json")
    token, rec = store.create("web01", ["write"], ("team", "a"))
    text = store.path.read_text()
    assert token not in text and token.split("_")[-1] not in text
    assert json.loads(text)["tokens"][0]["sha256"] == hash_token(token) == rec.sha256
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.path.parent).st_mode) == 0o700
    assert check(store, bearer(token), "write") == Principal("web01", rec.id, frozenset({"write"}), ("team", "a"))


def test_scopes_admin_implies_all(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "t.json")
    w, _ = store.create("w", ["write"])
    r, _ = store.create("r", ["read"])
    a, _ = store.create("a", ["admin"])
    assert check(store, bearer(w), "write").name == "w"
    with pytest.raises(ScopeError, match="needs 'read'") as exc:
        check(store, bearer(w), "read")
    assert exc.value.status == 403
    with pytest.raises(ScopeError):
        check(store, bearer(r), "write")
    with pytest.raises(ScopeError):
        check(store, bearer(r), "admin")
    for scope in ("read", "write", "admin", None):
        assert check(store, bearer(a), scope).name == "a"


BAD_HEADERS = [
    (None, "missing credentials"),
    ("", "missing credentials"),
    ("Token abc", "unsupported Authorization header"),
    ("Bearer", "unsupported Authorization header"),
    ("Basic !!!", "malformed basic credentials"),
    (basic("grafana", ""), "no password"),
    ("Bearer sotp_000000000000_" + "A" * 43, "invalid or revoked token"),
    ("Bearer not-even-shaped-like-a-token", "invalid or revoked token"),
]


@pytest.mark.parametrize(("header", "message"), BAD_HEADERS, ids=[str(h) for h, _ in BAD_HEADERS])
def test_bad_credentials_are_401(tmp_path: Path, header: str | None, message: str) -> None:
    store = TokenStore(tmp_path / "t.json")
    store.create("x", ["read"])
    with pytest.raises(AuthError, match=message) as exc:
        check(store, header, "read")
    assert exc.value.status == 401
    assert 'Basic realm="sotp"' in challenge_headers(exc.value)["WWW-Authenticate"]


def test_basic_auth_with_token_as_password_and_wrong_secret(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "t.json")
    token, _ = store.create("grafana", ["read"])
    assert check(store, basic("anything", token), "read").name == "grafana"
    assert extract_token(basic("u", "p:with:colons")) == "p:with:colons"
    # Right id, wrong secret: refused.
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    with pytest.raises(AuthError, match="invalid or revoked"):
        check(store, bearer(forged), "read")


def test_revoke_is_seen_by_a_running_reader(tmp_path: Path) -> None:
    reader = TokenStore(tmp_path / "t.json")  # the server's instance
    writer = TokenStore(tmp_path / "t.json")  # the CLI's
    token, rec = writer.create("web01", ["write"])
    assert check(reader, bearer(token), "write").token_id == rec.id
    writer.revoke("web01")
    with pytest.raises(AuthError, match="invalid or revoked") as exc:
        check(reader, bearer(token), "write")
    assert exc.value.status == 401
    # The name is free again; revoking twice is an error naming the fix.
    writer.create("web01", ["write"])
    with pytest.raises(ConfigError, match="no active token"):
        writer.revoke(rec.id)


def test_create_validation(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "t.json")
    store.create("a", ["read"])
    with pytest.raises(ConfigError, match="active token named 'a'"):
        store.create("a", ["read"])
    with pytest.raises(ConfigError, match="choose from read, write, configs, admin"):
        store.create("b", ["root"])
    with pytest.raises(ConfigError, match="token name"):
        store.create("has space", ["read"])


@pytest.mark.parametrize(
    ("text", "want"),
    [("team=a", ("team", "a")), ("org=x=y", ("org", "x=y")), ("team=", None), ("1x=a", None), ("__t=a", None),
     ("job=a", None), ("team", None)],
)
def test_parse_tenant(text: str, want: tuple[str, str] | None) -> None:
    if want is None:
        with pytest.raises(ConfigError, match="tenant"):
            parse_tenant(text)
    else:
        assert parse_tenant(text) == want


@pytest.mark.parametrize(
    ("listen", "loopback"),
    [("127.0.0.1:9201", True), ("127.8.0.1:1", True), ("[::1]:9201", True), ("localhost:9201", True),
     ("0.0.0.0:9201", False), (":9201", False), ("[::]:9201", False), ("10.0.0.5:9201", False),
     ("myhost:9201", False)],
)
def test_auth_on_by_default_unless_loopback(listen: str, loopback: bool, tmp_path: Path) -> None:
    assert is_loopback_listen(listen) is loopback
    config = Config()
    config.server.listen = listen
    config.auth = {"tokens_file": str(tmp_path / "none.json")}
    assert auth_enabled(config) is (not loopback)
    config.auth = {"enabled": True, "tokens_file": str(tmp_path / "none.json")}
    assert auth_enabled(config)
    config.auth = {"enabled": False, "tokens_file": str(tmp_path / "none.json")}
    assert not auth_enabled(config)


def test_issue17_7_an_active_token_turns_auth_on_even_on_loopback(tmp_path: Path) -> None:
    """Finding 7: on loopback, tokens made with `sotp token create` were silently ignored."""
    store = TokenStore(tmp_path / "tokens.json")
    cfg = AuthConfig(tokens_file=str(store.path))
    assert auth_required(cfg, "127.0.0.1:9201", store)[0] is False
    store.create("agent", ["write"])
    on, why = auth_required(cfg, "127.0.0.1:9201", store)
    assert on and "1 active token" in why
    store.revoke("agent")
    assert auth_required(cfg, "127.0.0.1:9201", store)[0] is False  # only active tokens count
    store.create("agent2", ["write"])
    # An explicit setting still wins (the documented opt-out).
    assert auth_required(AuthConfig(enabled=False, tokens_file=str(store.path)), "127.0.0.1:1", store)[0] is False


def test_auth_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"auth\.public_paths\[0\]"):
        from_dict(AuthConfig, {"public_paths": ["metrics"]}, "auth")
    with pytest.raises(ConfigError, match=r"auth\.tokenfile: unknown key"):
        from_dict(AuthConfig, {"tokenfile": "x"}, "auth")


def test_cli_create_list_revoke(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"

    def sotp(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(sotp_cmd("token", "--tokens-file", str(tokens), *args), cwd=REPO, capture_output=True,
                              text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})

    created = sotp("create", "--name", "web01", "--scope", "write", "--tenant", "team=a")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("sotp_") and "\n" not in token
    assert "shown only now" in created.stderr
    store = TokenStore(tokens)
    assert check(store, bearer(token), "write").tenant == ("team", "a")
    listed = sotp("list")
    assert "web01" in listed.stdout and "team=a" in listed.stdout
    assert token not in listed.stdout + listed.stderr
    assert hash_token(token) not in listed.stdout
    as_json = json.loads(sotp("list", "--json").stdout)
    assert [(t["name"], t["scopes"], t["tenant"]) for t in as_json] == [("web01", ["write"], "team=a")]
    assert sotp("revoke", "web01").returncode == 0
    with pytest.raises(AuthError):
        check(store, bearer(token), "write")
    assert json.loads(sotp("list", "--json").stdout) == []
    assert len(json.loads(sotp("list", "--json", "--all").stdout)) == 1
    bad = sotp("create", "--name", "x", "--scope", "write", "--tenant", "nope")
    assert bad.returncode == 2 and "use label=value" in bad.stderr
