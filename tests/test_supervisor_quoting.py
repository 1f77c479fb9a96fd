"""The role's quoting filter, checked against supervisor's own config parser."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from supervisor.datatypes import dict_of_key_value_pairs
from supervisor.options import expand

spec = importlib.util.spec_from_file_location(
    "supervisor_filter", Path(__file__).parents[1] / "plugins" / "filter" / "supervisor_env_value.py"
)
assert spec and spec.loader
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
quote = module.supervisor_env_value


def parse(line: str) -> dict:
    """What supervisord does with an environment= line (supervisor.options)."""
    return dict_of_key_value_pairs(expand(line, {"here": "/etc/supervisor"}, "environment"))


@pytest.mark.parametrize(
    "value",
    [
        'redis://:p%a,s"s@redis:6379/0',
        "redis://:p%25a%2Cs%22s@redis:6379/0",
        "redis://:it's@redis:6379/0",
        "rediss://u:pw@h:6380/0?ssl_cert_reqs=required&ssl_ca_certs=/etc/ssl/ca.pem",
        "unix:///run/redis/redis.sock?db=2",
        "web1.example.com",
        "a=b,c=d %(here)s",
    ],
)
def test_values_survive_supervisor_parsing(value: str) -> None:
    line = f"REDIS_URL={quote(value)},HOSTNAME={quote('web1')}"
    assert parse(line) == {"REDIS_URL": value, "HOSTNAME": "web1"}


@pytest.mark.parametrize("value", ["both ' and \"", "line\nbreak", '"leading', "trailing'"])
def test_unrepresentable_values_fail_loudly(value: str) -> None:
    with pytest.raises(ValueError):
        quote(value)


@given(st.text(alphabet=st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters="'"), min_size=1))
def test_any_value_without_single_quotes_round_trips(value: str) -> None:
    if value[0] == '"' or value[-1] == '"':
        return
    assert parse(f"K={quote(value)}") == {"K": value}
