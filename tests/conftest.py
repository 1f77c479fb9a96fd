"""The harness's servers as fixtures; each one is stopped at teardown, pass or fail.

And the tiers: which test runs where, in one table (TIERS, below), applied at collection
as markers that the Makefile and noxfile.py select on."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, FrozenSet, Iterator, List

import pytest

from harness import Collector, RedisServer, Supervisords


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def collector(redis_server: RedisServer) -> Iterator[Collector]:
    with Collector(redis_server.port) as c:
        yield c


@pytest.fixture
def start_supervisord(tmp_path: Path) -> Iterator[Supervisords]:
    """``start_supervisord(programs, redis_url, **options)``: a started Supervisord
    (options as Supervisord's, plus directory= and kind=); all stopped at teardown."""
    with Supervisords(tmp_path) as started:
        yield started


# -- Tiers ---------------------------------------------------------------------------
# `make test` runs every test at least once (`make pytest`, in the .venv: all but
# test_demo.py, which `make demo-test` runs). The tags below choose what else runs them:
#
#   check        `make check`, after every change: unit and in-process tests, chosen by
#                measured duration (tests/*: --durations=0, December 2026): the whole
#                tier takes about a minute. No container, no browser, no fleet.
#   check_unit   the module's tests without the integration marker are in `make check`
#                (its real supervisords are not).
#   portable     the listener's side: raptor/publisher with the name parsing, config and
#                packaging it ships with, which run on the hosts' Pythons (3.9-3.13).
#                noxfile.py runs them on every interpreter; those marked integration (real
#                supervisords) on the oldest and the newest only. Everything else (the
#                consumers, web, alert, the roles' files) runs centrally on one Python:
#                once, in the .venv.
#   redis_floor  a consumer's in-process tests against Redis, run again by noxfile.py's
#                `oldest` session with redis-py's floor (5.0): the consumers share the
#                dependency range `redis>=5.0` with the listener.
#   serial       timing-sensitive (a convergence within 2 s, an ack or run time, a retry
#                count over seconds, a rate-limit window): `make pytest` runs these alone,
#                after the parallel pass, never beside other tests. Browser and fleet-scale
#                tests are serial too (markers browser, fleet_scale).
#   together     a module-scoped fixture (one scenario for all the module's cases): the
#                parallel pass keeps the module on one worker, so it is built once.
#
# A module missing here fails the collection: a new test module chooses its tier (and
# its cost in the phase table) when it is added. Keys are module names, or
# "module::function" for one test function (all its parameters).
TIERS: Dict[str, FrozenSet[str]] = {
    name: frozenset(tags.split())
    for name, tags in {
        # the listener, its names, config and packaging
        "test_acl": "portable serial",  # 20 listeners' snapshots within 10 s: missed beside the benches
        "test_burst": "portable serial",
        "test_config": "portable check",
        "test_events": "portable check",
        "test_history_publish": "portable",
        "test_hostile_input": "portable",
        "test_listener_inprocess": "portable check",
        "test_messages": "portable check",
        "test_names_vr": "portable check_unit together",
        "test_outages": "portable serial",
        "test_outbox_and_logs": "portable check_unit",
        "test_outbox_and_logs::test_many_distinct_processes_do_not_make_put_quadratic": "serial",
        "test_outbox_and_logs::test_take_wakes_up_on_put_and_on_resync": "serial",
        "test_packaging": "portable check together",
        "test_plan": "portable check",
        "test_protocol": "portable check",
        "test_schedule": "portable check",
        "test_sink": "portable check",
        "test_sink::test_a_requested_resync_is_not_starved_by_a_flood": "serial",
        "test_sink::test_a_refused_permission_is_said_once_retried_calmly_and_recovered": "serial",
        "test_sink_faults": "portable serial",
        "test_supervisor_auth": "portable check_unit serial",
        "test_supervisord_changes": "portable serial",
        # raptor/publisher/identity's half of the duplicates; the rest is the consumers'
        "test_duplicates": "check_unit",
        "test_duplicates::test_start_ticks_is_field_22_even_with_parentheses_in_the_name": "portable",
        "test_duplicates::test_supervisord_id_without_proc_is_none": "portable",
        "test_duplicates::test_supervisord_id_joins_boot_namespace_pid_and_start_time": "portable",
        "test_duplicates::test_host_identity_here_is_read_once_per_parent": "portable",
        "test_duplicates::test_two_containers_with_the_same_programs_and_pids_are_not_duplicates": "portable",
        "test_duplicates::test_duplicates_of_1000_hosts_are_found_in_one_pass": "serial",
        "test_duplicates::test_status_of_1000_containers_exits_0_and_names_a_renamed_one": "serial",
        # the consumers: CLI, web, alert
        "test_cli": "",
        "test_cli_inprocess": "check redis_floor",
        "test_consumer_acl": "",
        "test_history": "check redis_floor",
        "test_history_resume": "",  # fleet_scale: serial
        "test_seq": "check",
        "test_stream_follow": "check redis_floor",
        "test_web": "",
        "test_web_auth": "check",
        "test_web_browser": "together",  # browser: serial
        "test_web_hub": "check redis_floor",
        "test_alert": "",
        "test_alert::test_the_alerter_works_as_the_readmes_redis_user": "serial",
        "test_alert::test_the_rate_limit_sends_max_notices_then_one_summary_counting_the_rest": "serial",
        "test_alert::test_a_stopped_leader_hands_over_at_once_and_idle_consumers_are_forgotten": "serial",
        "test_alert_config": "check",
        "test_alert_deliver": "check",
        "test_alert_incidents": "check",
        "test_alert_notices": "check",
        # the collection's roles and plugins (run on the Ansible controller)
        "test_role_metadata": "check",
        "test_role_vars": "check",
        "test_supervisor_quoting": "check",
        "test_wheel_bundle": "check",
        # the machinery: the doctor runs podman; the benches' smoke runs them (minutes)
        "test_doctor": "serial",
        "test_bench_smoke": "",
        "test_bench_smoke::test_web_bench_writes_every_figure": "serial",  # browser
        "test_demo": "",  # `make demo-test`, the container fleet
    }.items()
}
TAGS = {"check", "check_unit", "portable", "redis_floor", "serial", "together"}


def tags_of(item: pytest.Item) -> FrozenSet[str]:
    module = item.path.stem
    if module not in TIERS:
        raise pytest.UsageError(
            f"tests/{item.path.name} is in no tier: add it to TIERS in tests/conftest.py "
            "(which tests run in make check, on every Python, alone)"
        )
    function = getattr(item, "originalname", item.name)
    return TIERS[module] | TIERS.get(f"{module}::{function}", frozenset())


@pytest.hookimpl(tryfirst=True)  # before -m deselects on the markers added here
def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    xdist = config.pluginmanager.hasplugin("xdist")
    for item in items:
        tags = tags_of(item)
        if "check" in tags or ("check_unit" in tags and item.get_closest_marker("integration") is None):
            item.add_marker(pytest.mark.check)
        if "serial" in tags or item.get_closest_marker("browser") or item.get_closest_marker("fleet_scale"):
            item.add_marker(pytest.mark.serial)
        for tag in ("portable", "redis_floor"):
            if tag in tags:
                item.add_marker(tag)
        if "together" in tags and xdist:
            item.add_marker(pytest.mark.xdist_group(item.path.stem))


def pytest_configure(config: pytest.Config) -> None:
    unknown = {tag for tags in TIERS.values() for tag in tags} - TAGS
    if unknown:
        raise pytest.UsageError(f"tests/conftest.py TIERS: unknown tags {sorted(unknown)}")
