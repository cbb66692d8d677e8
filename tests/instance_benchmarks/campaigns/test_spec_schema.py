"""The campaign file's models and their JSON Schema: the published schema is the models' own, every example
is valid under it and points an editor at it, and the models' errors name the file, the line and the field."""
from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from typer.testing import CliRunner

from instance_benchmarks.backends.registry import BACKENDS
from instance_benchmarks.campaign_file import load_spec, parse_spec
from instance_benchmarks.campaigns.spec_models import (
    SCHEMA_FILE, CampaignFile, campaign_schema, schema_text, validate_file,
)
from instance_benchmarks.campaigns.yamlfile import load_yaml_file
from instance_benchmarks import cli
from instance_benchmarks.cli import app
from instance_benchmarks.core.errors import TrainfleetInputError
from tests.instance_benchmarks.conftest import spec_dict

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_the_published_schema_is_the_models_own():
    """Regenerate it with `trainfleet campaign schema --out instance_benchmarks/campaigns/campaign.schema.json`."""
    assert SCHEMA_FILE.read_text() == schema_text()
    schema = campaign_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "trainfleet campaign" and schema["additionalProperties"] is False
    assert set(schema["required"]) == {"campaign", "repo", "ref", "region", "max_runtime_minutes", "budget_usd",
                                       "matrix"}


def test_the_schema_ships_with_the_package():
    assert "campaigns/campaign.schema.json" in (ROOT / "pyproject.toml").read_text()


def test_campaign_schema_prints_it_and_writes_it(tmp_path):
    printed = CliRunner().invoke(app, ["campaign", "schema"])
    assert printed.exit_code == 0 and json.loads(printed.stdout) == campaign_schema()
    written = CliRunner().invoke(app, ["campaign", "schema", "--out", str(tmp_path / "s.json")])
    assert written.exit_code == 0 and written.stdout == "" and (tmp_path / "s.json").read_text() == schema_text()


def _described(schema: dict, where: str = ""):
    for name, prop in schema.get("properties", {}).items():
        yield f"{where}{name}", prop.get("description")


def test_every_key_has_a_description_an_editor_shows():
    schema = campaign_schema()
    models = [("", schema), *((f"{name}.", sub) for name, sub in schema["$defs"].items())]
    missing = [key for prefix, sub in models for key, text in _described(sub, prefix) if not text]
    assert missing == []


def test_every_backend_section_is_a_key_and_every_backend_one_of_them():
    assert {"ec2", "sagemaker"} == set(BACKENDS) <= set(CampaignFile.model_fields)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_is_valid_under_the_published_schema(path):
    _validator().validate(load_yaml_file(path))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_points_an_editor_at_the_schema(path):
    first = path.read_text().splitlines()[0]
    prefix = "# yaml-language-server: $schema="
    assert first.startswith(prefix)
    assert (path.parent / first[len(prefix):]).resolve() == SCHEMA_FILE.resolve()
    assert os.path.relpath(SCHEMA_FILE, path.parent) == first[len(prefix):]


@pytest.mark.parametrize("changes", [
    {"max_attempt": 3}, {"max_runtime_minutes": 0}, {"max_runtime_minutes": 7 * 24 * 60 + 1}, {"repeats": 21},
    {"market": "reserved"}, {"budget_usd": "ten"}, {"vary_seed": "yes"}, {"nodes": 17},
    {"matrix": {"batch_size": [3]}}, {"matrix": {"instance_type": []}}, {"target": {"metric": "x"}},
    {"fallback": {"type": "c5.xlarge"}}, {"benchmark": {"max_minutes": 1, "total_step": 5}},
    {"hyperparameters": {"epochs": {"a": 1}}}, {"workload": "cartpole"}, {"sagemaker": {"role": "x"}},
])
def test_the_schema_and_the_models_refuse_the_same_shapes(changes):
    data = spec_dict(**changes)
    with pytest.raises(jsonschema.ValidationError):
        _validator().validate(data)
    with pytest.raises(TrainfleetInputError):
        parse_spec(data)


def _refusal(tmp_path, text: str) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(TrainfleetInputError) as raised:
        load_spec(path)
    message = str(raised.value)
    assert "\n" not in message
    return message.replace(str(path), "c.yaml")


def _file(**changes) -> str:
    return yaml.safe_dump(spec_dict(**changes), sort_keys=False)


def _line(text: str, start: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if line.lstrip("- ").startswith(start))


def test_an_unknown_key_names_its_line_and_the_closest_known_key(tmp_path):
    text = _file(max_attempt=3)
    assert _refusal(tmp_path, text) == \
        f"c.yaml:{_line(text, 'max_attempt:')}: unknown key 'max_attempt' (did you mean max_attempts?)"


def test_a_nested_unknown_key_names_its_parent(tmp_path):
    text = _file(benchmark={"max_minutes": 1, "total_step": 5})
    assert _refusal(tmp_path, text).startswith(
        f"c.yaml:{_line(text, 'total_step:')}: benchmark: unknown key 'total_step' (did you mean total_steps, ")


def test_a_list_item_is_named_by_its_index_and_line(tmp_path):
    text = _file(matrix={"instance_type": ["c5.xlarge", "p9.mega"], "batch_size": [3]})
    message = _refusal(tmp_path, text)
    assert message.startswith(f"c.yaml:{_line(text, 'p9.mega')}: ") and "unknown instance type 'p9.mega'" in message


def test_a_bound_is_stated_with_the_line(tmp_path):
    text = _file(repeats=30)
    assert _refusal(tmp_path, text) == \
        f"c.yaml:{_line(text, 'repeats:')}: repeats must be a whole number from 1 to 20, got 30"


def test_a_word_not_allowed_lists_the_allowed_ones_and_the_closest(tmp_path):
    text = _file(workload="cartpole")
    message = _refusal(tmp_path, text)
    assert message.startswith(f"c.yaml:{_line(text, 'workload:')}: workload 'cartpole' must be tabular_mlp, ")
    assert message.endswith("or gpt_tokens (did you mean cartpole_pg?)")


def test_a_missing_key_names_the_mapping_it_belongs_in(tmp_path):
    data = spec_dict()
    del data["budget_usd"]
    assert _refusal(tmp_path, yaml.safe_dump(data)) == "c.yaml:1: missing required key 'budget_usd'"


def test_several_problems_are_counted_on_the_one_line(tmp_path):
    message = _refusal(tmp_path, _file(repeats=0, nodes=0, budget_usd=-1))
    assert message.endswith("(and 2 more)")


def test_checks_after_the_model_name_the_line_too(tmp_path):
    text = _file(hyperparameters={"epochs": 3, "device": "tpu"})
    assert _refusal(tmp_path, text).startswith(f"c.yaml:{_line(text, 'device:')}: hyperparameters: --device must be ")
    text = _file(estimated_minutes=99)
    assert _refusal(tmp_path, text) == \
        f"c.yaml:{_line(text, 'estimated_minutes:')}: estimated_minutes 99 exceeds max_runtime_minutes 30"


def test_a_yaml_1_1_number_names_its_line(tmp_path):
    text = _file().replace("epochs: 3", "epochs: 010")
    message = _refusal(tmp_path, text)
    assert message.startswith(f"c.yaml:{_line(text, 'epochs:')}: hyperparameters.epochs: 010 is octal in YAML 1.1")


@pytest.mark.parametrize("key, bounds", [
    ("max_runtime_minutes", {"minimum": 1, "maximum": 7 * 24 * 60}), ("repeats", {"minimum": 1, "maximum": 20}),
    ("nodes", {"minimum": 1, "maximum": 16}), ("budget_usd", {"exclusiveMinimum": 0}),
    ("metrics_grace_minutes", {"exclusiveMinimum": 0}), ("max_attempts", {"minimum": 1}),
])
def test_the_bounds_are_stated_in_the_schema(key, bounds):
    prop = campaign_schema()["properties"][key]
    assert {name: prop[name] for name in bounds} == bounds


def test_campaign_schema_out_to_an_unwritable_place_is_one_input_error(tmp_path, monkeypatch, capsys):
    target = tmp_path / "missing" / "s.json"
    monkeypatch.setattr(sys, "argv", ["trainfleet", "campaign", "schema", "--out", str(target)])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"error: {target}: cannot write the schema (No such file or directory)\n"


NUMBERS = {"max_runtime_minutes": "int", "repeats": "int", "max_attempts": "int", "budget_usd": "float",
           "metrics_grace_minutes": "float"}  # keys no other rule ties to the base campaign


@settings(derandomize=True, max_examples=150, deadline=None)
@given(key=st.sampled_from(sorted(NUMBERS)), value=st.one_of(
    st.integers(-(2**40), 2**40), st.booleans(), st.text(max_size=3), st.none(),
    st.floats(allow_nan=False, allow_infinity=False)))
def test_the_schema_and_the_models_agree_on_every_number(key, value):
    """Finite values of the JSON types (YAML's .inf and .nan have no JSON form; the models refuse them); an
    integral float where a whole number goes (3.0) counts as an integer in JSON Schema but not in the models."""
    assume(value is not None and not (NUMBERS[key] == "int" and isinstance(value, float)))
    data = spec_dict(**{key: value})
    try:
        validate_file(data)
        valid = True
    except ValidationError:
        valid = False
    assert _validator().is_valid(data) == valid


def test_a_misspelt_required_key_is_reported_as_the_misspelling_first(tmp_path):
    """`regoin:` for `region:`: the one line names the unknown key, its line and the key meant, not only that
    `region` is missing."""
    from instance_benchmarks.campaign_file import load_spec
    from instance_benchmarks.core.errors import TrainfleetInputError

    path = tmp_path / "typo.yaml"
    path.write_text("campaign: x\nrepo: https://github.com/acme/x.git\nref: main\nscript: train.py\n"
                    "regoin: us-east-1\nmax_runtime_minutes: 10\nbudget_usd: 5\n"
                    "matrix:\n  instance_type: [c5.xlarge]\n")
    with pytest.raises(TrainfleetInputError) as raised:
        load_spec(path)
    message = str(raised.value)
    assert message.startswith(f"{path}:5: unknown key 'regoin'") and "did you mean region" in message, message
    assert "\n" not in message
