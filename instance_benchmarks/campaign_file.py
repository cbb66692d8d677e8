"""A campaign file read for a command: campaigns/spec.py's parse, plus the part that only the backend registry
knows (the layer that may consult it: campaigns/ imports no backend).

The backend's part, checked after the repository and the region and before the hyperparameters (so a file with
several problems names the same one first as ever): the backend is a registered one (also one added with
`registry.register`), does what the campaign asks of it (a repository of its own, fallback, several nodes), no
other backend has a section, each instance type has the backend's catalog price, and its own section is valid.
The backend's run prefix becomes the spec's `run_prefix`, so the spec names its runs without the registry.
"""
from __future__ import annotations

from pathlib import Path

from instance_benchmarks.backends.base import Backend
from instance_benchmarks.backends.registry import BACKENDS, backend_class
from instance_benchmarks.campaigns.spec import CampaignSpec, Located, instance_types, parse_campaign
from instance_benchmarks.campaigns.spec_models import CampaignFile
from instance_benchmarks.campaigns.yamlfile import load_yaml_lines
from instance_benchmarks.catalog import Catalog
from instance_benchmarks.core.contract import ANY_REPO, FALLBACK, MULTI_NODE
from instance_benchmarks.core.errors import TrainfleetInputError, did_you_mean

_LACKING = {  # a capability the campaign needs -> why the backend cannot run it
    ANY_REPO: "backend {backend} runs trainfleet's bundled workloads only: name a workload",
    FALLBACK: "backend {backend} does not support fallback",
    MULTI_NODE: "nodes: {nodes} needs backend: sagemaker (backend {backend} runs each run on one instance; its "
                "multi-GPU types use torchrun within it)",
}


def parse_spec(data, catalog: Catalog | None = None, source: str = "campaign", base_dir: Path | None = None,
               lines: dict | None = None) -> CampaignSpec:
    """Validate a loaded YAML document (`lines`: each key path's line, from yamlfile.load_yaml_lines): the
    campaign's own checks (campaigns.spec.parse_campaign) and its backend's; every problem is one
    TrainfleetInputError line naming the file, the line where known, and the field."""
    return parse_campaign(data, _backend_check, catalog, source=source, base_dir=base_dir, lines=lines)


def load_spec(path: str | Path, catalog: Catalog | None = None) -> CampaignSpec:
    """Read a campaign file (as untrusted input: see campaigns/yamlfile.py) and validate it."""
    path = Path(path)
    data, lines = load_yaml_lines(path)
    return parse_spec(data, catalog, source=str(path), base_dir=path.resolve().parent, lines=lines)


def _backend_check(model: CampaignFile, data: dict, catalog: Catalog, region: str,
                   at: Located) -> tuple[str, dict | None]:
    """campaigns.spec.BackendCheck for the registry's backends: (run prefix, the backend's settings)."""
    backend_cls = at.checked(("backend",), _backend, model, data)
    for path, instance_type in instance_types(data):
        at.checked(path, _list_price, backend_cls, catalog, instance_type, region)
    settings = backend_cls.check_settings(data.get(model.backend), data, at.where((model.backend,)))
    return backend_cls.RUN_PREFIX, settings


def _backend(model: CampaignFile, data: dict) -> type[Backend]:
    """The campaign's backend class, once it is known to do what the campaign asks of it."""
    if model.backend not in BACKENDS:
        raise TrainfleetInputError(f"backend {model.backend!r} is not supported (use: {', '.join(BACKENDS)})"
                                   + did_you_mean(model.backend, BACKENDS))
    backend_cls = backend_class(model.backend)
    asked = {ANY_REPO: model.workload is None, FALLBACK: model.fallback is not None, MULTI_NODE: model.nodes > 1}
    lacking = [need for need, wanted in asked.items() if wanted and need not in backend_cls.CAPABILITIES]
    if lacking:
        raise TrainfleetInputError(_LACKING[lacking[0]].format(backend=model.backend, nodes=model.nodes))
    other = [name for name in BACKENDS if name != model.backend and data.get(name) is not None]
    if other:
        raise TrainfleetInputError(f"a {other[0]} section needs backend: {other[0]}")
    return backend_cls


def _list_price(backend_cls: type[Backend], catalog: Catalog, instance_type: str, region: str) -> float:
    """The backend's catalog price of an instance type (a one-line input error if it has none, or cannot run it)."""
    return backend_cls.list_price(catalog.get(instance_type), region)
