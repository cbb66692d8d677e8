"""Metric records from a training script's stdout: JSON lines and SageMaker-style regex definitions."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from instance_benchmarks.measure.metrics import MetricDefinition, MetricDefinitionError, MetricParser, parse_definitions

# PyTorch examples/word_language_model prints these every log interval and at the end of each epoch.
WLM_BATCH = "| epoch   1 |   200/ 2983 batches | lr 20.00 | ms/batch 45.21 | loss  6.10 | ppl   445.75"
WLM_EPOCH = "| end of epoch   1 | time: 40.1s | valid loss  5.51 | valid ppl   247.83"
WLM_DEFINITIONS = [
    {"name": "epoch", "regex": r"\| epoch\s+(\d+) \|"},
    {"name": "step", "regex": r"(\d+)/\s*\d+ batches"},
    {"name": "ms_per_batch", "regex": r"ms/batch\s+([\d.]+)"},
    {"name": "loss", "regex": r"\| loss\s+([\d.]+)"},
    {"name": "valid_loss", "regex": r"valid loss\s+([\d.]+)"},
]


@pytest.fixture
def wlm() -> MetricParser:
    return MetricParser(parse_definitions(WLM_DEFINITIONS))


def test_regex_definitions_matching_one_line_make_one_record(wlm):
    assert wlm.parse(WLM_BATCH, 12.3456789) == {
        "epoch": 1.0, "step": 200.0, "ms_per_batch": 45.21, "loss": 6.10, "t": 12.345679}


def test_only_matching_definitions_contribute(wlm):
    assert wlm.parse(WLM_EPOCH + "\n", 40.1) == {"valid_loss": 5.51, "t": 40.1}
    assert wlm.parse("Downloading wikitext-2 ...", 0.5) is None
    assert wlm.parse("", 0.5) is None


def test_capture_that_is_not_a_finite_float_is_skipped():
    parser = MetricParser(parse_definitions([
        {"name": "loss", "regex": r"loss (\S+)"}, {"name": "acc", "regex": r"acc=(\w*)"}]))
    assert parser.parse("loss nan acc=", 1.0) is None
    assert parser.parse("loss inf acc=0", 1.0) == {"acc": 0.0, "t": 1.0}
    assert parser.parse("loss 1e-3 acc=x", 1.0) == {"loss": 0.001, "t": 1.0}


def test_json_line_is_a_record_as_is():
    line = '  {"step": 10, "samples": 2560, "loss": 0.31, "val_accuracy": 0.82}  \n'
    assert MetricParser().parse(line, 3.0) == {
        "step": 10, "samples": 2560, "loss": 0.31, "val_accuracy": 0.82, "t": 3.0}


def test_json_keeps_finite_numbers_and_short_strings_only():
    line = ('{"step": 5, "loss": NaN, "lr": Infinity, "done": true, "cfg": {"a": 1}, "tags": [1], "none": null,'
            ' "event": "resumed", "note": "' + "x" * 201 + '", "bell": "a\\u0007", "bad": "\\udcff"}')
    assert MetricParser().parse(line, 2.0) == {"step": 5, "event": "resumed", "t": 2.0}


def test_json_t_is_overwritten_by_the_callers_t():
    assert MetricParser().parse('{"t": 999, "loss": 1.5}', 7.25) == {"loss": 1.5, "t": 7.25}
    assert MetricParser().parse('{"t": 999}', 7.25) is None
    assert MetricParser().parse('{"loss": NaN}', 1.0) is None


def test_json_lines_are_not_searched_by_definitions(wlm):
    assert wlm.parse('{"msg": "ms/batch 45.21"}', 1.0) == {"msg": "ms/batch 45.21", "t": 1.0}


@pytest.mark.parametrize("line", [
    "[1, 2]", '"loss 1"', "{not json", '{"a": 1', '{"a": ' + "[" * 100_000, "\udcff\udcfe\x00{\ufffd"])
def test_lines_that_are_not_json_objects_are_not_records(line):
    assert MetricParser().parse(line, 1.0) is None


def test_non_json_brace_line_is_still_searched():
    parser = MetricParser(parse_definitions([{"name": "loss", "regex": r"loss=([\d.]+)"}]))
    assert parser.parse("{epoch 1} loss=0.5 \udcff", 1.0) == {"loss": 0.5, "t": 1.0}


@settings(derandomize=True, max_examples=200)
@given(st.text())
def test_any_line_parses_without_error(line):
    record = MetricParser(parse_definitions(WLM_DEFINITIONS)).parse(line, 1.0)
    assert record is None or record["t"] == 1.0


def test_parse_definitions_returns_frozen_definitions():
    assert parse_definitions([{"name": "loss", "regex": r"loss (\d+)"}]) == (MetricDefinition("loss", r"loss (\d+)"),)
    assert parse_definitions([]) == ()


@pytest.mark.parametrize(("raw", "message"), [
    ({"name": "loss", "regex": "(x)"}, "metric_definitions must be a list"),
    ([{"name": "loss", "regex": "loss ("}], "metric_definitions[0].regex 'loss (' does not compile: "),
    ([{"name": "a", "regex": "(a)"}, {"name": "loss", "regex": r"loss \d+"}],
     r"metric_definitions[1].regex 'loss \\d+' must have exactly one capturing group (has 0)"),
    ([{"name": "loss", "regex": r"(loss) (\d+)"}], "must have exactly one capturing group (has 2)"),
    ([{"name": "val-loss", "regex": "(x)"}], "metric_definitions[0].name 'val-loss' must match"),
    ([{"name": "1st", "regex": "(x)"}], "metric_definitions[0].name '1st' must match"),
    ([{"name": "t", "regex": "(x)"}], "metric_definitions[0].name 't' is reserved or repeated"),
    ([{"name": "a", "regex": "(x)"}, {"name": "a", "regex": "(y)"}], "metric_definitions[1].name 'a' is reserved"),
    ([{"name": "a", "regex": "(x)", "type": "float"}], "metric_definitions[0] must have exactly the keys"),
    ([{"name": "a"}], "metric_definitions[0] must have exactly the keys 'name' and 'regex', got ['name']"),
    (["loss (x)"], "metric_definitions[0] must have exactly the keys 'name' and 'regex', got str"),
    ([{"name": "a", "regex": 3}], "metric_definitions[0].regex must be a string, got int"),
])
def test_bad_definitions_are_refused_with_a_one_line_message(raw, message):
    with pytest.raises(MetricDefinitionError) as info:
        parse_definitions(raw)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)
