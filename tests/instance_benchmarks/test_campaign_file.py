"""The campaign file's parse with the backend registry's checks (instance_benchmarks/campaign_file.py), and the
neutral parse under it (campaigns.spec.parse_campaign), which knows no backend: its caller gives the backend's part."""
from __future__ import annotations

import pytest

from instance_benchmarks.backends import base, registry
from instance_benchmarks.campaign_file import parse_spec
from instance_benchmarks.campaigns.spec import parse_campaign
from instance_benchmarks.campaigns.spec_models import CampaignFile
from instance_benchmarks.core import contract
from instance_benchmarks.core.errors import TrainfleetInputError
from tests.instance_benchmarks.conftest import spec_dict

SAGEMAKER = {"backend": "sagemaker", "sagemaker": {"max_wait_minutes": 60}}


def test_the_default_backend_is_the_registrys_and_the_capability_names_are_core_contracts():
    assert contract.DEFAULT_BACKEND == registry.DEFAULT
    assert CampaignFile.model_fields["backend"].default == registry.DEFAULT
    assert parse_spec(spec_dict()).backend == registry.DEFAULT
    assert (base.FALLBACK, base.ANY_REPO, base.MULTI_NODE) == (contract.FALLBACK, contract.ANY_REPO, contract.MULTI_NODE)
    capabilities = set().union(*(cls.CAPABILITIES for cls in registry.BACKENDS.values()))
    assert capabilities <= {contract.FALLBACK, contract.ANY_REPO, contract.MULTI_NODE}


@pytest.mark.parametrize("changes", [{}, SAGEMAKER], ids=["ec2", "sagemaker"])
def test_the_spec_carries_its_backends_run_prefix_and_names_its_runs_with_it(changes):
    spec = parse_spec(spec_dict(**changes))
    prefix = registry.backend_class(spec.backend).RUN_PREFIX
    assert spec.run_prefix == prefix and spec.to_dict()["run_prefix"] == prefix
    assert all(run.run_id.startswith(f"{prefix}c5-xlarge-") for run in spec.runs())


def test_the_registrys_checks_keep_their_messages_and_lines():
    lines = {("backend",): 4, ("matrix", "instance_type", 0): 9, ("fallback",): 11}
    with pytest.raises(TrainfleetInputError, match=r"^c\.yaml:4: backend 'sagemakr' is not supported \(use: ec2, "
                                                   r"sagemaker\) \(did you mean sagemaker\?\)$"):
        parse_spec(spec_dict(backend="sagemakr"), source="c.yaml", lines=lines)
    with pytest.raises(TrainfleetInputError, match=r"^c\.yaml:4: backend sagemaker does not support fallback$"):
        parse_spec(spec_dict(**SAGEMAKER, fallback={"market": "on-demand"}), source="c.yaml", lines=lines)
    with pytest.raises(TrainfleetInputError, match=r"^c\.yaml:4: a sagemaker section needs backend: sagemaker$"):
        parse_spec(spec_dict(sagemaker={"max_wait_minutes": 60}), source="c.yaml", lines=lines)


def test_a_registered_backend_is_known_to_the_parse_from_then_on():
    class Third(registry.BACKENDS["ec2"]):
        NAME, RUN_PREFIX = "third", "th-"

    with pytest.raises(TrainfleetInputError, match="backend 'third' is not supported"):
        parse_spec(spec_dict(backend="third"))
    registry.register(Third)
    try:
        spec = parse_spec(spec_dict(backend="third"))
    finally:
        del registry.BACKENDS["third"]
    assert spec.backend == "third" and spec.run_prefix == "th-" and spec.runs()[0].run_id.startswith("th-c5-xlarge-")


def test_the_neutral_parse_asks_its_caller_for_the_backends_part_after_the_region_and_before_the_hyperparameters():
    asked = []

    def backend_check(model, data, catalog, region, at):
        asked.append((model.backend, region, at.where(("backend",))))
        return "zz-", {"from": "the caller"}

    spec = parse_campaign(spec_dict(backend="anything"), backend_check, source="c.yaml", lines={("backend",): 3})
    assert asked == [("anything", "us-east-1", "c.yaml:3")]
    assert spec.backend == "anything" and spec.backend_settings == {"from": "the caller"}
    assert [run.run_id[:3] for run in spec.runs()] == ["zz-"] * 6
    asked.clear()
    with pytest.raises(TrainfleetInputError, match="region"):
        parse_campaign(spec_dict(region="mars-1"), backend_check)
    assert asked == []  # a bad region is named first, as before the backend's checks
    with pytest.raises(TrainfleetInputError, match="cartpole_pg has no hyperparameter 'nope'"):
        parse_campaign(spec_dict(hyperparameters={"nope": 1}), backend_check)
    assert len(asked) == 1  # the backend's checks come before the hyperparameters'
