"""Unit: configuration from the environment."""

from __future__ import annotations

import pytest

from raptor.config import ConfigError, ListenerConfig, redact_url

BASE = {"SUPERVISOR_ENABLED": "1", "REDIS_URL": "redis://:pw@redis.example:6379/2"}


def test_defaults_and_hostname_fallback() -> None:
    config = ListenerConfig.from_env(BASE, getfqdn=lambda: "box.example")
    assert config.hostname == "box.example"
    assert config.channel == "proc_events"
    assert config.snapshot_ttl == 600
    assert config.snapshot_key == "host_procs:box.example"
    assert config.supervisor_url is None
    assert "pw" not in repr(config)
    assert (config.history_maxlen, config.fleet_history_maxlen, config.history_max_age) == (5000, 1_000_000, 604800)
    assert config.history_key == "host_history:box.example"


def test_history_retention_from_env() -> None:
    env = {**BASE, "RAPTOR_HISTORY_MAXLEN": "20_000", "RAPTOR_FLEET_HISTORY_MAXLEN": "2000000"}
    config = ListenerConfig.from_env({**env, "RAPTOR_HISTORY_MAX_AGE": "86400"}, getfqdn=lambda: "h")
    assert (config.history_maxlen, config.fleet_history_maxlen, config.history_max_age) == (20000, 2_000_000, 86400)


def test_hostname_and_options_from_env() -> None:
    env = {**BASE, "HOSTNAME": "web1", "RAPTOR_CHANNEL": "events2", "RAPTOR_SNAPSHOT_TTL": "900"}
    env["SUPERVISOR_SERVER_URL"] = "unix:///var/run/supervisor.sock"
    config = ListenerConfig.from_env(env, getfqdn=lambda: "ignored")
    assert (config.hostname, config.channel, config.snapshot_ttl) == ("web1", "events2", 900)
    assert config.supervisor_url == "unix:///var/run/supervisor.sock"


@pytest.mark.parametrize(
    "url", ["redis://localhost", "rediss://u:p@h:6380/0?ssl_cert_reqs=none", "unix:///run/redis.sock?db=3"]
)
def test_accepted_urls(url: str) -> None:
    assert ListenerConfig.from_env({**BASE, "REDIS_URL": url}).redis_url == url


@pytest.mark.parametrize(
    ("env", "variable", "words"),
    [
        ({"REDIS_URL": ""}, "REDIS_URL", "is not set"),
        ({"REDIS_URL": "redis.example:6379"}, "REDIS_URL", "scheme"),
        ({"REDIS_URL": "redis://:pw@h:99999/0"}, "REDIS_URL", "malformed"),
        ({"REDIS_URL": "unix://"}, "REDIS_URL", "socket path"),
        ({"REDIS_URL": "redis://h/x"}, "REDIS_URL", "database"),
        ({"REDIS_URL": "redis://h/0?socket_timeout=soon"}, "REDIS_URL", "socket_timeout"),
        ({"REDIS_URL": "rediss://h/0?ssl_ca_cert=/x"}, "REDIS_URL", "unknown option 'ssl_ca_cert'"),
        ({"REDIS_URL": "rediss://h/0?ssl_ca_certs=/nonexistent.pem"}, "REDIS_URL", "not a readable file"),
        ({"REDIS_URL": "redis://:pw@h/0?protocol=3"}, "REDIS_URL", "protocol=3: raptor speaks RESP2"),
        ({"HOSTNAME": "two words"}, "HOSTNAME", "white space"),
        ({"RAPTOR_SNAPSHOT_TTL": "60"}, "RAPTOR_SNAPSHOT_TTL", "at least 120"),
        ({"RAPTOR_SNAPSHOT_TTL": "ten"}, "RAPTOR_SNAPSHOT_TTL", "whole number"),
        ({"RAPTOR_HISTORY_MAXLEN": "999"}, "RAPTOR_HISTORY_MAXLEN", "at least 1000"),
        ({"RAPTOR_HISTORY_MAXLEN": "1e6"}, "RAPTOR_HISTORY_MAXLEN", "whole number of entries"),
        ({"RAPTOR_FLEET_HISTORY_MAXLEN": "-5"}, "RAPTOR_FLEET_HISTORY_MAXLEN", "whole number of entries"),
        ({"RAPTOR_HISTORY_MAX_AGE": "60"}, "RAPTOR_HISTORY_MAX_AGE", "at least 3600"),
        ({"RAPTOR_HISTORY_MAX_AGE": "١٢٣٤"}, "RAPTOR_HISTORY_MAX_AGE", "whole number of seconds"),
        ({"RAPTOR_LOG_LEVEL": "LOUD"}, "RAPTOR_LOG_LEVEL", "one of"),
        ({"SUPERVISOR_ENABLED": ""}, "SUPERVISOR_ENABLED", "supervisord"),
        ({"SUPERVISOR_SERVER_URL": "ftp://x"}, "SUPERVISOR_SERVER_URL", "scheme"),
    ],
)
def test_errors_name_the_variable(env: dict, variable: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        ListenerConfig.from_env({**BASE, **env}, getfqdn=lambda: "h")
    assert info.value.variable == variable
    assert str(info.value).startswith(variable + " ")
    assert words in str(info.value)
    assert ":pw@" not in str(info.value)


def test_redact_url() -> None:
    assert redact_url("redis://user:p%40ss@h:1/0") == "redis://user:***@h:1/0"
    assert redact_url("redis://h:1/0?password=x&db=1") == "redis://h:1/0?password=***&db=1"
    assert redact_url("redis://h:1/0") == "redis://h:1/0"
