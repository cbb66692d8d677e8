"""The app's configuration: read once from CDK context in `app.py`, validated, then passed down frozen."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Mapping

from instance_benchmarks.catalog import InstanceSpec, load_catalog
from instance_benchmarks.core.bootstrap import LONGEST_BUCKET, LONGEST_REGION, Bootstrap, build_user_data, job_prefix
from instance_benchmarks.core.contract import SSM_PREFIX
from instance_benchmarks.core.errors import TrainfleetInputError
from instance_benchmarks.core.validation import (
    validate_directory,
    validate_git_ref,
    validate_identifier,
    validate_positive,
    validate_repo_url,
    validate_script_args,
    validate_script_path,
    validate_snippet,
)



@dataclass(frozen=True)
class ImageConfig:
    """One machine image kind's launch-template settings (defaults: the catalog's `images`)."""

    ami_parameter: str     # SSM public parameter of the AMI id, resolved by CloudFormation at deploy
    root_device_name: str
    root_volume_gib: int
    python: str            # the interpreter a job's bootstrap uses on this image


def catalog_images() -> dict[str, ImageConfig]:
    return {
        kind: ImageConfig(image.ssm_parameter, image.root_device_name, image.root_volume_gib, image.python)
        for kind, image in load_catalog().images.items()
    }


def context_key(kind: str, name: str) -> str:
    """The context key overriding `name` of image `kind`: plain for gpu (`ami_parameter`, kept from the
    single-image days), prefixed for the others (`cpu_ami_parameter`)."""
    return name if kind == "gpu" else f"{kind}_{name}"


@dataclass(frozen=True)
class JobConfig:
    """The one-shot training job of `cdk deploy TrainingJob-<job_id> -c job_id=<job_id> -c ...` (one stack per
    job id, so several jobs run at once; without -c job_id the id is a hash of the job's context)."""

    job_id: str
    instance_type: str
    repo: str
    ref: str
    script: str | None
    script_args: tuple[str, ...]
    max_runtime_minutes: int
    spot: bool
    workdir: str | None = None   # a directory in the repo to run in
    setup: str | None = None     # shell commands before training (else requirements.txt is installed)
    run: str | None = None       # shell commands that train, instead of script

    @property
    def instance_spec(self) -> InstanceSpec:
        """The catalog's spec of the job's type (its image kind, burstable); refused types raise."""
        return load_catalog().get(self.instance_type).require_launchable()

    @property
    def market(self) -> str:
        return "spot" if self.spot else "on-demand"

    def bootstrap(self, *, bucket: str, region: str | None, python: str) -> Bootstrap:
        """The job's user data specification (TrainingJobStack), outputs under s3://<bucket>/jobs/<job_id>/."""
        return Bootstrap(repo=self.repo, ref=self.ref, bucket=bucket, prefix=job_prefix(self.job_id),
                         max_runtime_minutes=self.max_runtime_minutes, script=self.script,
                         script_args=self.script_args, workdir=self.workdir, setup=self.setup, run=self.run,
                         python=python, region=region)


@dataclass(frozen=True)
class AppConfig:
    images: Mapping[str, ImageConfig] = field(default_factory=catalog_images)
    max_azs: int = 2
    # instances in private subnets without public IPv4, egress through one NAT gateway (README "Network")
    private_subnets: bool = False
    # CDK's custom resource (a Lambda function) strips the VPC's default security group; off only where
    # Lambda cannot run (the embedded default's moto)
    restrict_default_security_group: bool = True
    checkpoint_version_retention_days: int = 7
    termination_protection: bool = False
    ssm_prefix: str = SSM_PREFIX
    job: JobConfig | None = None


_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def _bool(value, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise TrainfleetInputError(f"context {name}={value!r} must be true or false")


def _int(value, name: str) -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise TrainfleetInputError(f"context {name}={value!r} must be a whole number") from None
    return validate_positive(number, f"context {name}")


def _job_from_context(get) -> JobConfig | None:
    keys = ("instance_type", "repo", "ref", "script", "run")
    given = {k: get(k) for k in keys}
    if all(v is None for v in given.values()):
        return None
    missing = [k for k in ("instance_type", "repo", "ref") if given[k] is None]
    if given["script"] is None and given["run"] is None:
        missing.append("script")
    if missing:
        raise TrainfleetInputError(
            "the training job needs -c " + " -c ".join(f"{k}=..." for k in missing)
            + (" (or -c run=COMMANDS instead of script)" if "script" in missing else "")
        )
    if given["script"] is not None and given["run"] is not None:
        raise TrainfleetInputError("the training job takes -c script=... or -c run=..., not both")
    load_catalog().get(given["instance_type"]).require_launchable()
    validate_repo_url(given["repo"])
    validate_git_ref(given["ref"])
    if given["script"] is not None:
        validate_script_path(given["script"])
    workdir = validate_directory(get("workdir"), "context workdir") if get("workdir") else None
    setup, run = (validate_snippet(str(get(k)), f"context {k}") if get(k) else None for k in ("setup", "run"))
    raw_args = get("script_args") or ""
    script_args = validate_script_args(tuple(str(raw_args).split()))
    job_id = get("job_id")
    if job_id is None:
        parts = [v for v in (*given.values(), workdir, setup) if v is not None]
        digest = hashlib.sha256("\0".join([*parts, *script_args]).encode()).hexdigest()[:10]
        job_id = f"job-{digest}"
    validate_identifier(job_id, "job_id")
    job = JobConfig(
        job_id=job_id,
        instance_type=given["instance_type"],
        repo=given["repo"],
        ref=given["ref"],
        script=given["script"],
        script_args=script_args,
        max_runtime_minutes=_int(get("max_runtime_minutes") or 120, "max_runtime_minutes"),
        spot=_bool(get("spot") if get("spot") is not None else True, "spot"),
        workdir=workdir,
        setup=setup,
        run=run,
    )
    # EC2 takes 16 KB of user data, which holds setup and run: refused now, not at deploy (the stack's bucket
    # name and region are tokens at synth, so the longest possible ones are measured)
    python = catalog_images()[job.instance_spec.image].python
    build_user_data(job.bootstrap(bucket=LONGEST_BUCKET, region=LONGEST_REGION, python=python))
    return job


def _images_from_context(get) -> dict[str, ImageConfig]:
    if get("root_device_name") is not None:
        raise TrainfleetInputError("context root_device_name is no longer read: each image's root device comes "
                                   "from the catalog (instance_benchmarks/catalog/data/catalog.json `images`)")
    images = {}
    for kind, default in catalog_images().items():
        parameter_key, size_key = context_key(kind, "ami_parameter"), context_key(kind, "root_volume_gib")
        parameter = str(get(parameter_key) or default.ami_parameter)
        if not parameter.startswith("/"):
            raise TrainfleetInputError(
                f"context {parameter_key}={parameter!r} must be an SSM parameter name starting with '/'")
        size = _int(get(size_key) or default.root_volume_gib, size_key)
        images[kind] = ImageConfig(parameter, default.root_device_name, size, default.python)
    return images


def config_from_context(get) -> AppConfig:
    """Build the config from a context getter (`app.node.try_get_context`). Raises TrainfleetInputError."""
    defaults = AppConfig()
    images = _images_from_context(get)
    max_azs = _int(get("max_azs") or defaults.max_azs, "max_azs")
    if max_azs > 2:
        raise TrainfleetInputError(f"context max_azs={max_azs} must be 1 or 2")
    return AppConfig(
        images=images,
        max_azs=max_azs,
        private_subnets=_bool(get("private_subnets") if get("private_subnets") is not None else False,
                              "private_subnets"),
        checkpoint_version_retention_days=_int(
            get("checkpoint_version_retention_days") or defaults.checkpoint_version_retention_days,
            "checkpoint_version_retention_days",
        ),
        termination_protection=_bool(
            get("termination_protection") if get("termination_protection") is not None else False,
            "termination_protection",
        ),
        job=_job_from_context(get),
    )
