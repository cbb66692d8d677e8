"""What the deployed stacks exported to SSM, read once per command; the bucket every backend writes to."""
from __future__ import annotations

from dataclasses import dataclass

from instance_benchmarks.core.contract import SSM_EXPORTS, SSM_PREFIX
from instance_benchmarks.core.errors import TrainfleetInputError


@dataclass(frozen=True)
class Infrastructure:
    """What the Compute stack exported to SSM."""

    bucket: str
    spot_template_id: str
    on_demand_template_id: str
    subnet_ids: tuple[str, ...]
    security_group_id: str
    instance_profile_arn: str

    def template_for(self, market: str) -> str:
        return self.spot_template_id if market == "spot" else self.on_demand_template_id


def resolve_infrastructure(ssm, prefix: str = SSM_PREFIX) -> Infrastructure:
    names = {key: f"{prefix}/{suffix}" for key, suffix in SSM_EXPORTS.items()}
    response = ssm.get_parameters(Names=list(names.values()))
    found = {p["Name"]: p["Value"] for p in response["Parameters"]}
    missing = [name for name in names.values() if name not in found]
    if missing:
        raise TrainfleetInputError(
            f"trainfleet is not deployed in this account/region (missing SSM parameter {missing[0]}): "
            "run `npx cdk deploy Storage Network Compute` first"
        )
    values = {key: found[name] for key, name in names.items()}
    values["subnet_ids"] = tuple(s for s in values["subnet_ids"].split(",") if s)
    return Infrastructure(**values)


def require_bucket(s3, bucket: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except s3.exceptions.ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        raise TrainfleetInputError(f"bucket {bucket!r} is not reachable ({code or error}); is the Storage stack deployed?") from None
