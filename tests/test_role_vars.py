"""The role's per-OS variables and its eventlistener template, without a host.

No Red Hat image can be built on the development machines: the Red Hat mapping is
proved here, by rendering the handler with each OS family's vars file. The template is
rendered with Jinja as Ansible's template module does, then read back by supervisor's
own configuration parser.
"""

from __future__ import annotations

import getpass
import importlib.util
import os
import pwd
from pathlib import Path
from typing import Any, Dict

import jinja2
import pytest
import yaml
from supervisor.options import ServerOptions

ROLE = Path(__file__).parents[1] / "roles" / "proc_publisher"
FILTER = Path(__file__).parents[1] / "plugins" / "filter" / "supervisor_env_value.py"


def load(relative: str) -> Any:
    return yaml.safe_load((ROLE / relative).read_text(encoding="utf-8"))


def render(text: str, variables: Dict[str, Any]) -> str:
    spec = importlib.util.spec_from_file_location("supervisor_env_value_filter", FILTER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # Ansible's template module: trim_blocks on, undefined variables are errors.
    env = jinja2.Environment(trim_blocks=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["velociraptor.raptor.supervisor_env_value"] = module.supervisor_env_value
    env.filters["comment"] = lambda value: "\n".join(f"# {line}" for line in str(value).splitlines())
    return env.from_string(text).render(**variables)


def task(tasks_file: str, name: str) -> Dict[str, Any]:
    return next(t for t in load(f"tasks/{tasks_file}") if t["name"] == name)


@pytest.mark.parametrize(("family", "service"), [("Debian", "supervisor"), ("RedHat", "supervisord")])
def test_install_starts_the_os_familys_supervisor_service(family: str, service: str) -> None:
    """EPEL's package is `supervisor` but its unit is `supervisord.service`."""
    os_vars = load(f"vars/{family}.yml")
    assert os_vars["_proc_publisher_supervisor_package"] == "supervisor"
    start = task("install.yml", "Start and enable the supervisor installed from the OS packages")
    assert render(start["ansible.builtin.service"]["name"], os_vars) == service
    assert start["ansible.builtin.service"]["state"] == "started"


# Modules that change a host; preflight only looks.
CHANGING = ("package", "service", "file", "copy", "template", "pip", "command", "meta")
READ_ONLY_COMMANDS = ("--version", " pid")


def test_preflight_changes_nothing_and_no_task_flushes_the_plays_handlers() -> None:
    for entry in load("tasks/preflight.yml"):
        modules = [key.rsplit(".", 1)[-1] for key in entry if key.startswith("ansible.builtin.")]
        for module in modules:
            if module == "command":
                assert entry[f"ansible.builtin.{module}"].endswith(READ_ONLY_COMMANDS), entry["name"]
                assert entry.get("changed_when") is False, entry["name"]
            else:
                assert module not in CHANGING, f"preflight task {entry['name']!r} uses {module}"
    for tasks_file in sorted((ROLE / "tasks").glob("*.yml")):
        for entry in load(f"tasks/{tasks_file.name}"):
            assert entry.get("ansible.builtin.meta") != "flush_handlers", f"{tasks_file.name}: {entry['name']}"


def test_both_families_define_the_same_variables() -> None:
    assert set(load("vars/Debian.yml")) == set(load("vars/RedHat.yml"))


@pytest.mark.parametrize(("family", "package"), [("Debian", "python3-packaging"), ("RedHat", "python3-setuptools")])
def test_hosts_get_what_ansibles_pip_module_imports(family: str, package: str) -> None:
    """The pip module needs packaging or setuptools; a host whose supervisor comes from pip may lack both."""
    assert package in load(f"vars/{family}.yml")["_proc_publisher_venv_packages"]


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
    """The listener's process config, as supervisord builds it from the rendered section."""
    (tmp_path / "proc_publisher.conf").write_text(section, encoding="utf-8")
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


def conf_file(family: str, **overrides: Any) -> str:
    """Where the role writes the eventlistener section (vars/main.yml, resolved as Ansible would)."""
    main = load("vars/main.yml")
    variables = role_variables(**load(f"vars/{family}.yml"), **overrides)
    variables["_proc_publisher_include_dir"] = render(main["_proc_publisher_include_dir"], variables)
    return render(main["_proc_publisher_conf_file"], variables)


def test_conf_file_name_and_directory_are_configurable() -> None:
    assert conf_file("Debian") == "/etc/supervisor/conf.d/proc_publisher.conf"
    assert conf_file("RedHat") == "/etc/supervisord.d/proc_publisher.ini"
    # supervisor from pip: its own include directory, *.conf on every OS
    pip = {"proc_publisher_supervisor_conf_dir": "/etc/supervisor-pip/conf.d"}
    assert conf_file("RedHat", **pip, proc_publisher_supervisor_conf_file="raptor.conf") == (
        "/etc/supervisor-pip/conf.d/raptor.conf"
    )
    assert conf_file("RedHat", **pip) == "/etc/supervisor-pip/conf.d/proc_publisher.ini"
