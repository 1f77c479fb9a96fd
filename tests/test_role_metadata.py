"""The role's variables are documented twice, identically: defaults and argument_specs."""

from __future__ import annotations

from pathlib import Path

import yaml

ROLE = Path(__file__).parents[1] / "roles" / "proc_publisher"


def load(relative: str) -> dict:
    return yaml.safe_load((ROLE / relative).read_text(encoding="utf-8"))


def test_defaults_and_argument_specs_list_the_same_variables() -> None:
    defaults = load("defaults/main.yml")
    options = load("meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    assert set(defaults) == set(options)
    for name, spec in options.items():
        assert name.startswith("proc_publisher_")
        assert spec.get("type") and spec.get("description"), name
        assert str(spec.get("default")) == str(defaults[name]), name
        if "choices" in spec:
            assert defaults[name] in spec["choices"], name


def test_every_default_has_a_comment() -> None:
    lines = (ROLE / "defaults" / "main.yml").read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        if line.startswith("proc_publisher_"):
            assert lines[index - 1].startswith("#"), f"{line.split(':')[0]} has no comment above it"
