"""Every place that documents configuration keys agrees with the schema, the one source of each rule.

The README's reference table is generated from the schema; the example configuration (which the
.deb's conffiles are made from) and the Ansible templates are written by hand and checked here:
every key they set exists, with its default (example) or a value its rule accepts (the roles'
defaults), and every bounded key's comment states its range.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from burrow.config import BurrowConfig, RabbitMQConfig, load_config
from burrow.config.rules import Between, Key, walk
from burrow.config.writing import toml_value

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "daemons" / "burrow" / "examples" / "burrow.toml"
ROLES = REPO / "ansible" / "roles"
TEMPLATES = sorted(ROLES.glob("burrow_*/templates/*.toml.j2"))
KEYS = {key.dotted: key for key in walk(BurrowConfig)}
#: A section header; a table of named tables (``[consumer.services.<name>]``) is shown commented
#: out in the example and looped over (``{{ name }}``) in the templates.
HEADER = re.compile(r"^(?:# )?\[([a-z_.]+(?:<name>|\{\{ name \}\})?)\]")
#: ``key = value  # comment``, or a key shown commented out (``# hosts = [...]``).
ASSIGNMENT = re.compile(r"^(?:# )?([a-z_]+) = (.*?)(?:\s+#\s*(.*))?$")


def assignments(path: Path) -> dict[str, tuple[str, str]]:
    """``{dotted key: (value text, comment with its continuation lines)}`` of a TOML file or template."""
    found: dict[str, tuple[str, str]] = {}
    section, last = "", ""
    for line in path.read_text(encoding="utf-8").splitlines():
        header = HEADER.match(line)
        if header:
            section, last = header.group(1).replace("{{ name }}", "<name>"), ""
            continue
        match = ASSIGNMENT.match(line)
        if match and (not line.startswith("#") or f"{section}.{match.group(1)}" in KEYS):
            last = f"{section}.{match.group(1)}"
            found[last] = (match.group(2), match.group(3) or "")
        elif last and line.startswith(" ") and line.strip().startswith("#"):
            value, comment = found[last]
            found[last] = (value, f"{comment} {line.strip()[1:].strip()}")
        else:
            last = ""
    return found


def test_the_readme_reference_is_the_one_generated_from_the_schema():
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "sync-config-reference.py"), "--check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for key in KEYS.values():
        assert f"| `{key.dotted}` |" in readme


def test_the_example_sets_every_key_of_the_schema_to_its_default():
    example = assignments(EXAMPLE)
    assert sorted(example) == sorted(KEYS)
    for dotted, (value, _comment) in example.items():
        key = KEYS[dotted]
        if dotted not in ("rabbitmq.hosts", "rabbitmq.password", "rabbitmq.password_file"):
            assert value == toml_value(key.default, octal=getattr(key.rule, "octal", False)), dotted
    assert load_config(EXAMPLE) == BurrowConfig(rabbitmq=RabbitMQConfig(password="guest"), path=str(EXAMPLE))


@pytest.mark.parametrize("dotted", [key.dotted for key in KEYS.values() if isinstance(key.rule, Between)])
def test_the_example_states_the_range_of_every_numeric_key(dotted):
    _value, comment = assignments(EXAMPLE)[dotted]
    assert comment.startswith(KEYS[dotted].rule.describe()), f"{dotted}: comment {comment!r}"


def _role_defaults() -> dict[str, object]:
    defaults: dict[str, object] = {}
    for path in ROLES.glob("*/defaults/main.yml"):
        defaults.update(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    return defaults


def _rendered_default(key: Key, value_text: str, defaults: dict[str, object]) -> object | None:
    """The value a role's default gives the key (None when the template computes it otherwise)."""
    variable = re.fullmatch(r"\{\{ (burrow_[a-z_]+) \| (int|float|to_json|bool \| lower)( \+ item\.index)? \}\}",
                            value_text)
    if variable is None or variable.group(1) not in defaults:
        return None
    value = defaults[variable.group(1)]
    return {"int": int, "float": float}.get(variable.group(2), lambda same: same)(value)


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda path: path.name)
def test_ansible_templates_set_schema_keys_to_values_their_rules_accept(template):
    defaults = _role_defaults()
    checked = 0
    for dotted, (value_text, _comment) in assignments(template).items():
        assert dotted in KEYS, f"{template.name} sets {dotted}, which is not a configuration key"
        key = KEYS[dotted]
        value = _rendered_default(key, value_text, defaults)
        if value is None or key.rule is None or isinstance(value, (list, bool)):
            continue
        assert key.rule.problem(value) is None, f"{template.name}: {dotted} = {value!r} from the role defaults"
        checked += 1
    assert checked >= 5
