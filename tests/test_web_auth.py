"""Who may read raptor web (raptor.web.auth): pure decisions, no server."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from raptor.config import ConfigError
from raptor.web.auth import TOKEN_VARIABLE, authorized, decide, is_loopback, read_token

TOKEN = "s3cret-token-0123456789"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("bind", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_needs_no_token(bind: str) -> None:
    assert is_loopback(bind)
    assert decide(bind, None, no_auth=False).token is None


@pytest.mark.parametrize("bind", ["0.0.0.0", "::", "10.1.2.3", "web1.example.com"])
def test_another_address_without_a_token_or_no_auth_is_refused_naming_both_ways_out(bind: str) -> None:
    with pytest.raises(ConfigError) as refused:
        decide(bind, None, no_auth=False)
    assert f"--bind {bind} is not a loopback address" in str(refused.value)
    assert TOKEN_VARIABLE in str(refused.value) and "--no-auth" in str(refused.value)


def test_another_address_with_a_token_requires_it_and_with_no_auth_serves_openly() -> None:
    assert decide("0.0.0.0", TOKEN, no_auth=False).token == TOKEN
    assert decide("0.0.0.0", None, no_auth=True).token is None


def test_a_token_and_no_auth_together_are_refused() -> None:
    with pytest.raises(ConfigError, match="choose one"):
        decide("127.0.0.1", TOKEN, no_auth=True)


def test_the_token_comes_from_the_file_before_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    assert read_token({TOKEN_VARIABLE: "another-token-abcdefgh"}, str(path)) == TOKEN
    assert read_token({TOKEN_VARIABLE: TOKEN}, None) == TOKEN
    assert read_token({}, None) is None


def test_unusable_tokens_are_refused_naming_where_they_came_from(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"{TOKEN_VARIABLE} holds a token shorter than 16"):
        read_token({TOKEN_VARIABLE: "short"}, None)
    with pytest.raises(ConfigError, match="spaces or control characters"):
        read_token({TOKEN_VARIABLE: "a token with spaces in it"}, None)
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match=f"--token-file {missing} cannot be read"):
        read_token({}, str(missing))


def test_the_token_is_accepted_as_bearer_or_as_any_users_basic_password() -> None:
    assert authorized(f"Bearer {TOKEN}", TOKEN)
    assert authorized(basic("ops", TOKEN), TOKEN)
    assert authorized(basic("", TOKEN), TOKEN)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        f"Token {TOKEN}",
        basic(TOKEN, "wrong"),
        "Basic not-base64!",
        "Basic " + base64.b64encode(b"\xff\xfe:" + TOKEN.encode()).decode(),
    ],
)
def test_anything_else_is_refused(header: str) -> None:
    assert not authorized(header, TOKEN)
