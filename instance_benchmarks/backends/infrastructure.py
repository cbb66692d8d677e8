"""What the deployed stacks exported to SSM, read once per command; the bucket every backend writes to."""
from __future__ import annotations

import json
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from instance_benchmarks.core.contract import MARKETS, SSM_EXPORTS, SSM_PREFIX
from instance_benchmarks.core.errors import TrainfleetInputError

DEPLOY = "npx cdk deploy Storage Network Compute"


@dataclass(frozen=True)
class Infrastructure:
    """What the Compute stack exported to SSM."""

    bucket: str
    # image kind -> {"spot": launch template id, "on-demand": launch template id, "root_volume_gib": int}
    launch_templates: Mapping[str, Mapping]
    subnet_ids: tuple[str, ...]
    security_group_id: str
    instance_profile_arn: str

    def _image(self, image: str) -> Mapping:
        try:
            return self.launch_templates[image]
        except KeyError:
            known = ", ".join(sorted(self.launch_templates)) or "none"
            raise TrainfleetInputError(
                f"the deployed Compute stack has no launch templates for the {image!r} image (it has: {known}); "
                f"redeploy with `{DEPLOY}`"
            ) from None

    def template_for(self, market: str, image: str) -> str:
        """The launch template id for `market` ("spot" or "on-demand") on image kind `image` ("gpu", "cpu")."""
        if market not in MARKETS:
            raise ValueError(f"market must be one of {MARKETS}, not {market!r}")
        return self._image(image)[market]

    def root_volume_gib(self, image: str) -> int:
        """The root volume size of the launch templates of image kind `image` (priced per run)."""
        return self._image(image)["root_volume_gib"]


def _valid_entry(entry) -> bool:
    size = entry.get("root_volume_gib") if isinstance(entry, dict) else None
    return (isinstance(entry, dict)
            and all(isinstance(entry.get(market), str) and entry[market].startswith("lt-") for market in MARKETS)
            and isinstance(size, int) and not isinstance(size, bool) and size > 0)


def parse_launch_templates(text: str, name: str) -> Mapping[str, Mapping]:
    """The `launch-templates` export, or a one-line error asking to redeploy when it is not that shape."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict) or not value or not all(_valid_entry(entry) for entry in value.values()):
        raise TrainfleetInputError(
            f"SSM parameter {name} is not the launch templates this trainfleet expects (an older Compute stack?): "
            f"redeploy with `{DEPLOY}`"
        )
    return MappingProxyType({kind: MappingProxyType(dict(entry)) for kind, entry in value.items()})


def resolve_infrastructure(ssm, prefix: str = SSM_PREFIX) -> Infrastructure:
    names = {key: f"{prefix}/{suffix}" for key, suffix in SSM_EXPORTS.items()}
    response = ssm.get_parameters(Names=list(names.values()))
    found = {p["Name"]: p["Value"] for p in response["Parameters"]}
    missing = [name for name in names.values() if name not in found]
    if missing == [names["launch_templates"]]:  # everything else is there: a Compute stack from before it
        raise TrainfleetInputError(
            f"the deployed Compute stack predates per-image launch templates (missing SSM parameter {missing[0]}): "
            f"redeploy with `{DEPLOY}`"
        )
    if missing:
        raise TrainfleetInputError(
            f"trainfleet is not deployed in this account/region (missing SSM parameter {missing[0]}): "
            f"run `{DEPLOY}` first"
        )
    values = {key: found[name] for key, name in names.items()}
    values["subnet_ids"] = tuple(s for s in values["subnet_ids"].split(",") if s)
    values["launch_templates"] = parse_launch_templates(values["launch_templates"], names["launch_templates"])
    return Infrastructure(**values)


def require_bucket(s3, bucket: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except s3.exceptions.ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        raise TrainfleetInputError(f"bucket {bucket!r} is not reachable ({code or error}); is the Storage stack deployed?") from None
