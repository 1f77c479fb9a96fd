"""Each role's variables are documented twice, identically: defaults and argument_specs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES_DIR = Path(__file__).parents[1] / "roles"
ROLES = ["proc_publisher", "raptor_web", "raptor_alert"]
# Options whose values are secrets: no_log in the argument specs.
SECRETS = {
    "proc_publisher": {"proc_publisher_supervisor_password"},
    "raptor_web": {"raptor_web_redis_url", "raptor_web_token"},
    "raptor_alert": {"raptor_alert_redis_url", "raptor_alert_config"},
}


def load(role: str, relative: str) -> dict:
    return yaml.safe_load((ROLES_DIR / role / relative).read_text(encoding="utf-8"))


@pytest.mark.parametrize("role", ROLES)
def test_defaults_and_argument_specs_list_the_same_variables(role: str) -> None:
    defaults = load(role, "defaults/main.yml")
    options = load(role, "meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    assert set(defaults) == set(options)
    for name, spec in options.items():
        assert name.startswith(f"{role}_")
        assert spec.get("type") and spec.get("description"), name
        assert str(spec.get("default")) == str(defaults[name]), name
        if "choices" in spec:
            assert defaults[name] in spec["choices"], name


@pytest.mark.parametrize("role", ROLES)
def test_every_default_has_a_comment(role: str) -> None:
    lines = (ROLES_DIR / role / "defaults" / "main.yml").read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        if line.startswith(f"{role}_"):
            assert lines[index - 1].startswith("#"), f"{line.split(':')[0]} has no comment above it"


@pytest.mark.parametrize("role", ROLES)
def test_secrets_are_no_log_in_the_argument_specs(role: str) -> None:
    """Ansible hides a no_log option's value wherever the argument spec check reports it."""
    options = load(role, "meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    for name in SECRETS[role]:
        assert options[name].get("no_log") is True, name
