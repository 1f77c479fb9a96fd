"""The roles' per-OS variables and their supervisor templates, without a host.

No Red Hat image can be built on the development machines: the Red Hat mapping is
proved here, by rendering the handler with each OS family's vars file. The templates are
rendered with Jinja as Ansible's template module does, then read back by supervisor's
own configuration parser (and raptor web's command line by raptor's own).
"""

from __future__ import annotations

import getpass
import importlib.util
import io
import os
import pwd
import re
import shlex
import signal
from pathlib import Path
from typing import Any, Dict, Optional

import jinja2
import pytest
import yaml
from supervisor.datatypes import RestartUnconditionally
from supervisor.options import ServerOptions

from raptor.config import ConfigError
from raptor.consumer.cli import build_parser, main
from raptor.web.auth import decide, is_loopback, read_token

ROLES_DIR = Path(__file__).parents[1] / "roles"
ROLES = ["proc_publisher", "raptor_web", "raptor_alert"]
# The internal role the three share: their preflight and install, the OS families' vars.
COMMON = "common"
ROLE = ROLES_DIR / "proc_publisher"
WEB = ROLES_DIR / "raptor_web"
ALERT = ROLES_DIR / "raptor_alert"
FILTER = Path(__file__).parents[1] / "plugins" / "filter" / "supervisor_env_value.py"


def load(relative: str, role: str = "proc_publisher") -> Any:
    return yaml.safe_load((ROLES_DIR / role / relative).read_text(encoding="utf-8"))


def ansible_bool(value: Any) -> bool:
    """Ansible's bool filter, for the values these roles give it."""
    return value is True or str(value).strip().lower() in ("true", "yes", "on", "1", "y", "t")


def render(text: str, variables: Dict[str, Any]) -> str:
    spec = importlib.util.spec_from_file_location("supervisor_env_value_filter", FILTER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # Ansible's template module: trim_blocks on, undefined variables are errors.
    env = jinja2.Environment(trim_blocks=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["velociraptor.raptor.supervisor_env_value"] = module.supervisor_env_value
    env.filters["comment"] = lambda value: "\n".join(f"# {line}" for line in str(value).splitlines())
    env.filters["bool"] = ansible_bool
    env.filters["regex_replace"] = lambda value, pattern, replacement: re.sub(pattern, replacement, str(value))
    # Ansible's tests: re.match and re.search
    env.tests["match"] = lambda value, pattern: re.match(pattern, str(value)) is not None
    env.tests["search"] = lambda value, pattern: re.search(pattern, str(value)) is not None
    return env.from_string(text).render(**variables)


def task(tasks_file: str, name: str, role: str = "proc_publisher") -> Dict[str, Any]:
    return next(t for t in load(f"tasks/{tasks_file}", role) if t["name"] == name)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_runs_the_shared_preflight_and_install_with_its_own_values(role: str) -> None:
    for phase in ("preflight", "install"):
        imports = [t for t in load(f"tasks/{phase}.yml", role) if "ansible.builtin.import_role" in t]
        assert [t["ansible.builtin.import_role"] for t in imports] == [
            {"name": f"velociraptor.raptor.{COMMON}", "tasks_from": f"{phase}.yml"}
        ]
        assert imports[0]["vars"] == {"_common": f"{{{{ _{role}_common }}}}"}
    values = load("vars/main.yml", role)[f"_{role}_common"]
    assert values["role"] == role
    assert values["home"] == f"{{{{ {role}_home }}}}"


@pytest.mark.parametrize(("family", "service"), [("Debian", "supervisor"), ("RedHat", "supervisord")])
def test_install_starts_the_os_familys_supervisor_service(family: str, service: str) -> None:
    """EPEL's package is `supervisor` but its unit is `supervisord.service`."""
    os_vars = load(f"vars/{family}.yml", COMMON)
    assert os_vars["_common_supervisor_package"] == "supervisor"
    start = task("install.yml", "Start and enable the supervisor installed from the OS packages", COMMON)
    assert render(start["ansible.builtin.service"]["name"], os_vars) == service
    assert start["ansible.builtin.service"]["state"] == "started"


# Modules that change a host; preflight only looks.
CHANGING = ("package", "service", "file", "copy", "template", "pip", "command", "meta")
READ_ONLY_COMMANDS = ("--version", " pid")


@pytest.mark.parametrize("role", [*ROLES, COMMON])
def test_preflight_changes_nothing_and_no_task_flushes_the_plays_handlers(role: str) -> None:
    for entry in load("tasks/preflight.yml", role):
        modules = [key.rsplit(".", 1)[-1] for key in entry if key.startswith("ansible.builtin.")]
        for module in modules:
            if module == "command":
                assert entry[f"ansible.builtin.{module}"].endswith(READ_ONLY_COMMANDS), entry["name"]
                assert entry.get("changed_when") is False, entry["name"]
            else:
                assert module not in CHANGING, f"preflight task {entry['name']!r} uses {module}"
    for tasks_file in sorted((ROLES_DIR / role / "tasks").glob("*.yml")):
        for entry in load(f"tasks/{tasks_file.name}", role):
            assert entry.get("ansible.builtin.meta") != "flush_handlers", f"{tasks_file.name}: {entry['name']}"


def test_both_families_define_the_same_variables() -> None:
    assert set(load("vars/Debian.yml", COMMON)) == set(load("vars/RedHat.yml", COMMON))


@pytest.mark.parametrize(("family", "package"), [("Debian", "python3-packaging"), ("RedHat", "python3-setuptools")])
def test_hosts_get_what_ansibles_pip_module_imports(family: str, package: str) -> None:
    """The pip module needs packaging or setuptools; a host whose supervisor comes from pip may lack both."""
    assert package in load(f"vars/{family}.yml", COMMON)["_common_venv_packages"]


@pytest.mark.parametrize("role", ROLES)
def test_handlers_touch_only_the_roles_own_program(role: str) -> None:
    """reread, then update/restart of the role's own group: never a bare update or restart all."""
    handlers = load("handlers/main.yml", role)
    commands = [h["ansible.builtin.command"].split("}}", 1)[1].strip() for h in handlers]
    assert commands[0] == "reread"
    for command in commands[1:]:
        verb, _, target = command.partition(" ")
        assert verb in ("update", "restart"), command
        assert target.split(":")[0] == role, command


def role_variables(**overrides: Any) -> Dict[str, Any]:
    variables = dict(load("defaults/main.yml"))
    variables.update(
        proc_publisher_hostname="web1",
        proc_publisher_redis_url="redis://:secret@redis:6379/0",
        _proc_publisher_buffer_size=1024,
        ansible_managed="Ansible managed",
    )
    variables.update(overrides)
    return variables


def parse_listener(tmp_path: Path, section: str) -> Any:
    """The listener's (or program's) process config, as supervisord builds it from the rendered section."""
    (tmp_path / "section.conf").write_text(section, encoding="utf-8")
    config = tmp_path / "supervisord.conf"
    config.write_text(
        f"[supervisord]\nlogfile={tmp_path}/supervisord.log\npidfile={tmp_path}/supervisord.pid\n"
        f"[include]\nfiles={tmp_path}/*.conf\n",
        encoding="utf-8",
    )
    options = ServerOptions()
    options.configfile = str(config)
    options.process_config(do_usage=False)
    (group,) = options.process_group_configs
    (process,) = group.process_configs
    return process


def template(**overrides: Any) -> str:
    text = (ROLE / "templates" / "proc_publisher.conf.j2").read_text(encoding="utf-8")
    return render(text, role_variables(proc_publisher_log_file="/tmp/proc_publisher.log", **overrides))


def test_default_template_has_no_user_and_no_supervisor_credentials(tmp_path: Path) -> None:
    text = template()
    assert "user=" not in text
    assert "SUPERVISOR_" not in text
    process = parse_listener(tmp_path, text)
    assert process.uid is None
    assert process.environment["REDIS_URL"] == "redis://:secret@redis:6379/0"
    assert not any(key.startswith("SUPERVISOR_") for key in process.environment)


@pytest.mark.parametrize("password", ["S!p@ss:w/rd$#%x", "100%%,it's", 'a "b" c'])
def test_supervisor_credentials_reach_the_listener_unchanged(tmp_path: Path, password: str) -> None:
    text = template(proc_publisher_supervisor_username="raptor-admin", proc_publisher_supervisor_password=password)
    process = parse_listener(tmp_path, text)
    assert process.environment["SUPERVISOR_USERNAME"] == "raptor-admin"
    assert process.environment["SUPERVISOR_PASSWORD"] == password
    assert process.environment["HOSTNAME"] == "web1"


def test_a_listener_user_becomes_supervisords_user_line(tmp_path: Path) -> None:
    # Any user of this machine but root: supervisord resolves the name to its uid.
    name = next(p.pw_name for p in pwd.getpwall() if p.pw_uid != 0 and p.pw_name != getpass.getuser())
    text = template(proc_publisher_user=name)
    if os.geteuid() != 0:
        pytest.skip("supervisord accepts user= only when it runs as root")
    assert f"\nuser={name}\n" in text
    assert parse_listener(tmp_path, text).uid == pwd.getpwnam(name).pw_uid


def conf_file(role: str, family: str, **overrides: Any) -> str:
    """Where the role writes its supervisor section (vars/main.yml, resolved as Ansible would)."""
    main = load("vars/main.yml", role)
    variables = {**load("defaults/main.yml", role), **load(f"vars/{family}.yml", COMMON), **overrides}
    variables[f"_{role}_include_dir"] = render(main[f"_{role}_include_dir"], variables)
    return render(main[f"_{role}_conf_file"], variables)


@pytest.mark.parametrize("role", ROLES)
def test_conf_file_name_and_directory_are_configurable(role: str) -> None:
    assert conf_file(role, "Debian") == f"/etc/supervisor/conf.d/{role}.conf"
    assert conf_file(role, "RedHat") == f"/etc/supervisord.d/{role}.ini"
    # supervisor from pip: its own include directory, *.conf on every OS
    pip = {f"{role}_supervisor_conf_dir": "/etc/supervisor-pip/conf.d"}
    assert conf_file(role, "RedHat", **pip, **{f"{role}_supervisor_conf_file": "raptor.conf"}) == (
        "/etc/supervisor-pip/conf.d/raptor.conf"
    )
    assert conf_file(role, "RedHat", **pip) == f"/etc/supervisor-pip/conf.d/{role}.ini"


# -- raptor_web ---------------------------------------------------------------------


def web_vars(**overrides: Any) -> Dict[str, Any]:
    """raptor_web's variables as Ansible resolves them: defaults, vars/main.yml, overrides."""
    variables: Dict[str, Any] = dict(load("defaults/main.yml", "raptor_web"))
    variables.update(
        raptor_web_redis_url="redis://:secret@redis:6379/0",
        raptor_web_log_file="/tmp/raptor_web.log",
        ansible_managed="Ansible managed",
    )
    variables.update(overrides)
    main = load("vars/main.yml", "raptor_web")
    for name in ("_raptor_web_token_file", "_raptor_web_octet", "_raptor_web_loopback"):
        variables[name] = render(main[name], variables)
    return variables


def web_template(**overrides: Any) -> str:
    text = (WEB / "templates" / "raptor_web.conf.j2").read_text(encoding="utf-8")
    return render(text, web_vars(**overrides))


def web_command(tmp_path: Path, **overrides: Any) -> Any:
    """raptor web's process config as supervisord reads it, and its arguments as raptor parses them."""
    process = parse_listener(tmp_path, web_template(**overrides))
    argv = shlex.split(process.command)
    assert argv[:2] == ["/opt/raptor-web/venv/bin/raptor", "web"]
    return process, build_parser().parse_args(argv[1:])


def test_web_default_program_serves_loopback_without_a_token(tmp_path: Path) -> None:
    text = web_template()
    assert "[program:raptor_web]\n" in text
    assert "user=" not in text
    process, args = web_command(tmp_path)
    assert (args.bind, args.port, args.root_path, args.token_file, args.no_auth) == ("127.0.0.1", 8642, "", None, False)
    assert (args.stale_after, args.log_level, args.redis_url) == (120, "INFO", None)  # the URL is not an argument
    assert process.environment == {"REDIS_URL": "redis://:secret@redis:6379/0"}
    assert process.uid is None
    assert (process.autostart, process.stopsignal, process.stopwaitsecs) == (True, signal.SIGTERM, 10)
    assert process.redirect_stderr is True
    assert process.stdout_logfile == "/tmp/raptor_web.log"
    assert decide(args.bind, None, args.no_auth).token is None  # raptor web starts with it


@pytest.mark.parametrize(
    "url",
    [
        'redis://:p%a,s"s@raptor-redis:6379/0',  # the molecule password: % , and "
        "redis://:it's%%25,x@redis:6379/0",
        "rediss://user:a=b;c d@redis.example:6380/1?ssl_cert_reqs=required",
        "unix:///run/redis/redis.sock?db=2",
    ],
)
def test_web_redis_url_reaches_raptor_web_unchanged(tmp_path: Path, url: str) -> None:
    process, _ = web_command(tmp_path, raptor_web_redis_url=url)
    assert process.environment["REDIS_URL"] == url
    assert url not in process.command


def test_web_token_is_a_file_never_the_command_line_or_the_config(tmp_path: Path) -> None:
    token = "s3cret-Token_0123456789%x"
    text = web_template(raptor_web_bind="0.0.0.0", raptor_web_token=token)
    assert token not in text
    assert token.replace("%", "%%") not in text
    process, args = web_command(tmp_path, raptor_web_bind="0.0.0.0", raptor_web_token=token)
    assert (args.bind, args.token_file, args.no_auth) == ("0.0.0.0", "/opt/raptor-web/token", False)
    assert not any("TOKEN" in key for key in process.environment)
    token_task = task("configure.yml", "Write the token file, readable by raptor web's user only", "raptor_web")
    assert token_task["ansible.builtin.copy"]["mode"] == "0600"
    assert token_task["ansible.builtin.copy"]["owner"] == "{{ raptor_web_user }}"
    assert token_task["no_log"] == "{{ raptor_web_no_log }}"
    # what the role writes there, raptor web reads back as the token
    file = tmp_path / "token"
    file.write_text(render(token_task["ansible.builtin.copy"]["content"], web_vars(raptor_web_token=token)))
    assert read_token({}, str(file)) == token


def test_web_no_auth_root_path_and_the_rest_reach_the_command_line(tmp_path: Path) -> None:
    _, args = web_command(
        tmp_path,
        raptor_web_bind="::",
        raptor_web_no_auth=True,
        raptor_web_port=9000,
        raptor_web_root_path="/ops/raptor",
        raptor_web_stale_after=300,
        raptor_web_log_level="DEBUG",
    )
    assert (args.bind, args.port, args.root_path, args.no_auth, args.token_file) == (
        "::",
        9000,
        "/ops/raptor",
        True,
        None,
    )
    assert (args.stale_after, args.log_level) == (300, "DEBUG")


def test_web_user_line(tmp_path: Path) -> None:
    name = next(p.pw_name for p in pwd.getpwall() if p.pw_uid != 0 and p.pw_name != getpass.getuser())
    text = web_template(raptor_web_user=name)
    assert f"\nuser={name}\n" in text
    if os.geteuid() != 0:
        pytest.skip("supervisord accepts user= only when it runs as root")
    assert parse_listener(tmp_path, text).uid == pwd.getpwnam(name).pw_uid


def preflight_accepts(name: str, **overrides: Any) -> bool:
    """Whether every condition of one of raptor_web's preflight asserts holds."""
    that = task("preflight.yml", name, "raptor_web")["ansible.builtin.assert"]["that"]
    variables = web_vars(**overrides)
    return all(
        render("{{ " + condition + " }}", variables) == "True"
        for condition in ([that] if isinstance(that, str) else that)
    )


def raptor_web_accepts(bind: str, token: str, no_auth: bool, tmp_path: Path) -> bool:
    """Whether raptor web starts with what the role would give it (the token in a file, if any)."""
    file: Optional[str] = None
    if token:
        (tmp_path / "token").write_text(token + "\n", encoding="utf-8")
        file = str(tmp_path / "token")
    try:
        decide(bind, read_token({}, file), no_auth)
    except ConfigError:
        return False
    return True


@pytest.mark.parametrize(
    ("bind", "token", "no_auth"),
    [
        ("127.0.0.1", "", False),
        ("127.8.9.10", "", False),
        ("localhost", "", False),
        ("::1", "", False),
        ("0.0.0.0", "", False),
        ("::", "", False),
        ("10.1.2.3", "", False),
        ("dashboard.example", "", False),
        ("127.0.0.256", "", False),
        ("0.0.0.0", "0123456789abcdef", False),
        ("0.0.0.0", "0123456789abcde", False),  # 15 characters
        ("0.0.0.0", "0123456789 abcdef", False),
        ("0.0.0.0", "0123456789\tabcdef", False),
        ("0.0.0.0", "", True),
        ("0.0.0.0", "0123456789abcdef", True),  # both: raptor web refuses
        ("127.0.0.1", "0123456789abcdef", False),
        ("127.0.0.1", "short", False),
    ],
)
def test_web_preflight_applies_raptor_webs_own_rule(tmp_path: Path, bind: str, token: str, no_auth: bool) -> None:
    role = preflight_accepts(
        "Check the token against the address", raptor_web_bind=bind, raptor_web_token=token, raptor_web_no_auth=no_auth
    )
    assert role == raptor_web_accepts(bind, token, no_auth, tmp_path)


@pytest.mark.parametrize(
    "bind",
    [
        "127.0.0.1",
        "127.1.2.3",
        "127.255.255.255",
        "localhost",
        "::1",
        "0:0:0:0:0:0:0:1",
        "0.0.0.0",
        "::",
        "10.0.0.1",
        "128.0.0.1",
        "127.0.0.256",
        "127.00.0.1",
        "127.0.0",
        "example.com",
        "127.0.0.1.example.com",
    ],
)
def test_web_loopback_rule_is_never_looser_than_raptor_webs(bind: str) -> None:
    role = ansible_bool(web_vars(raptor_web_bind=bind)["_raptor_web_loopback"])
    assert role == is_loopback(bind)


@pytest.mark.parametrize(
    ("overrides", "accepted"),
    [
        ({}, True),
        ({"raptor_web_port": 0}, False),
        ({"raptor_web_port": 65536}, False),
        ({"raptor_web_port": 65535}, True),
        ({"raptor_web_root_path": "/raptor"}, True),
        ({"raptor_web_root_path": "/a/b-c"}, True),
        ({"raptor_web_root_path": "raptor"}, False),
        ({"raptor_web_root_path": "/raptor/"}, False),
        ({"raptor_web_root_path": "/a b"}, False),
        ({"raptor_web_bind": "0.0.0.0 --no-auth"}, False),
        ({"raptor_web_home": "/opt/raptor web"}, False),
        ({"raptor_web_home": "/opt/100%"}, False),
        ({"raptor_web_home": "opt/raptor-web"}, False),
        ({"raptor_web_stale_after": 0}, False),
        ({"raptor_web_supervisor_conf_file": "conf.d/raptor_web.conf"}, False),
    ],
)
def test_web_preflight_checks_the_values_it_writes_into_the_command(overrides: Dict[str, Any], accepted: bool) -> None:
    assert preflight_accepts("Check the address, port, path prefix and other values", **overrides) is accepted


@pytest.mark.parametrize(("url", "accepted"), [("", False), ("http://redis", False), ("redis://r:6379/0", True)])
def test_web_preflight_requires_a_redis_url(url: str, accepted: bool) -> None:
    assert preflight_accepts("Check the Redis URL", raptor_web_redis_url=url) is accepted


# -- raptor_alert -------------------------------------------------------------------


def alert_vars(**overrides: Any) -> Dict[str, Any]:
    """raptor_alert's variables as Ansible resolves them: defaults, vars/main.yml, overrides."""
    variables: Dict[str, Any] = dict(load("defaults/main.yml", "raptor_alert"))
    variables.update(
        inventory_hostname="alert1.example",
        raptor_alert_redis_url="redis://:secret@redis:6379/0",
        raptor_alert_config={"notify": {"hook": "json://127.0.0.1:9/x"}, "rules": [{"kind": "fatal"}]},
        raptor_alert_log_file="/tmp/raptor_alert.log",
        ansible_managed="Ansible managed",
    )
    variables.update(overrides)
    variables["raptor_alert_consumer"] = render(str(variables["raptor_alert_consumer"]), variables)
    variables["_raptor_alert_config_file"] = render(
        load("vars/main.yml", "raptor_alert")["_raptor_alert_config_file"], variables
    )
    return variables


def alert_command(tmp_path: Path, **overrides: Any) -> Any:
    """raptor alert's process config as supervisord reads it, and its arguments as raptor parses them."""
    text = (ALERT / "templates" / "raptor_alert.conf.j2").read_text(encoding="utf-8")
    process = parse_listener(tmp_path, render(text, alert_vars(**overrides)))
    argv = shlex.split(process.command)
    assert argv[:2] == ["/opt/raptor-alert/venv/bin/raptor", "alert"]
    return process, build_parser().parse_args(argv[1:])


def test_alert_program_reads_its_checked_config_and_is_named_after_the_host(tmp_path: Path) -> None:
    process, args = alert_command(tmp_path)
    assert process.name == "raptor_alert"
    assert (str(args.config), args.consumer, args.lease, args.log_level) == (
        "/opt/raptor-alert/alert.yml",
        "alert1.example",
        10.0,
        "INFO",
    )
    assert args.redis_url is None and process.environment == {"REDIS_URL": "redis://:secret@redis:6379/0"}
    assert process.uid is None
    assert (process.autostart, process.autorestart, process.stopsignal, process.stopwaitsecs) == (
        True,
        RestartUnconditionally,
        signal.SIGTERM,
        30,
    )
    assert "json://" not in process.command  # the targets are in the 0600 config file only
    _, args = alert_command(
        tmp_path, raptor_alert_consumer="alert-b", raptor_alert_lease=30, raptor_alert_log_level="DEBUG"
    )
    assert (args.consumer, args.lease, args.log_level) == ("alert-b", 30.0, "DEBUG")


def test_alert_config_is_written_only_after_raptor_alert_accepts_it(tmp_path: Path) -> None:
    """The copy's validate: is raptor alert's own --check, run on the new file; its refusal
    is told by the next task from --check's lines (which name keys, never values)."""
    copy_task = task(
        "configure.yml", "Write the alerter's config, checked by raptor alert --check first", "raptor_alert"
    )
    copy = copy_task["ansible.builtin.copy"]
    assert (copy["mode"], copy["owner"], copy_task["no_log"]) == (
        "0600",
        "{{ raptor_alert_user }}",
        "{{ raptor_alert_no_log }}",
    )
    assert copy["dest"] == "{{ _raptor_alert_config_file }}"
    validate = render(copy["validate"], alert_vars())
    assert validate == "/opt/raptor-alert/venv/bin/raptor alert --check --config %s"
    bad = tmp_path / "new.yml"
    bad.write_text(yaml.safe_dump({"notify": {"hook": "json://u:s3cret@h/x"}, "rules": [{"kind": "fatl"}]}))
    err = io.StringIO()
    assert main(shlex.split(validate.replace("%s", str(bad)))[1:], io.StringIO(), err) == 2
    told = task("configure.yml", "Fail when raptor alert --check refused the config", "raptor_alert")
    message = render(told["ansible.builtin.fail"]["msg"], {"_raptor_alert_config_written": {"stderr": err.getvalue()}})
    assert "- rules[0].kind" in message and str(bad) not in message and "s3cret" not in message


@pytest.mark.parametrize(
    ("overrides", "accepted"),
    [
        ({}, True),
        ({"raptor_alert_config": {}}, False),
        ({"raptor_alert_config": "notify: x"}, False),
        ({"raptor_alert_consumer": "alert 1"}, False),
        ({"raptor_alert_consumer": "alert1:b@x"}, True),
        ({"raptor_alert_lease": 0}, False),
        ({"raptor_alert_lease": 300}, True),
        ({"raptor_alert_lease": 301}, False),
        ({"raptor_alert_home": "/opt/raptor alert"}, False),
        ({"raptor_alert_supervisor_conf_file": "conf.d/raptor_alert.conf"}, False),
    ],
)
def test_alert_preflight_checks_the_values_it_writes_into_the_command(
    overrides: Dict[str, Any], accepted: bool
) -> None:
    that = task("preflight.yml", "Check the config, consumer name, lease and other values", "raptor_alert")
    variables = alert_vars(**overrides)
    conditions = that["ansible.builtin.assert"]["that"]
    assert all(render("{{ " + c + " }}", variables) == "True" for c in conditions) is accepted
