"""`backend: sagemaker`: each attempt is a SageMaker training job (script mode, managed spot training).

Launching needs the optional SageMaker SDK (`pip install '.[sagemaker]'`); finding, collecting and
stopping jobs use boto3 alone, so `status` and `teardown` work without the SDK.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

from botocore.exceptions import ClientError

from instance_benchmarks.backends.base import ANY_REPO, MULTI_NODE, Backend, LaunchRefused, RunState, TeardownSummary
from instance_benchmarks.backends.sagemaker import jobs
from instance_benchmarks.catalog import Catalog, InstanceSpec, load_catalog
from instance_benchmarks.catalog.pricing import PriceQuote
from instance_benchmarks.core.contract import CAMPAIGN_TAG, RUN_TAG, now_iso
from instance_benchmarks.core.errors import TrainfleetInputError
from instance_benchmarks.core.validation import validate_positive

LIVE_STATUSES = ("InProgress", "Stopping")
# CreateTrainingJob documents ResourceInUse, ResourceLimitExceeded and ResourceNotFound. ResourceLimitExceeded
# is an account quota: "ml.<type> for training job usage" / "... for spot training job usage" (or the number
# of jobs). SageMaker reports a capacity shortage as a job that fails with FailureReason "CapacityError: ..."
# (or, for managed spot, one that waits for capacity until its max wait), not as a CreateTrainingJob error;
# these codes are refused too should the API return them.
QUOTA_CODES = ("ResourceLimitExceeded",)
CAPACITY_CODES = ("CapacityError", "InsufficientCapacityError")
# A full IAM role ARN in any partition (aws, aws-cn, aws-us-gov, ...): a 12-digit account, an optional path
# and a name of IAM's characters (IAM API reference, CreateRole: RoleName, Path), at most 64 of them.
ROLE_ARN = re.compile(r"arn:aws(-[a-z]+)*:iam::\d{12}:role/([\w+=,.@-]+/){0,16}[\w+=,.@-]{1,64}", re.ASCII)


def launch_refusal(error, instance_type: str, market: str, region: str) -> LaunchRefused | None:
    """The LaunchRefused for a CreateTrainingJob ClientError that is a quota or capacity refusal, else None."""
    code = error.response.get("Error", {}).get("Code", "")
    message = error.response.get("Error", {}).get("Message", "")
    if code in QUOTA_CODES:
        named = re.search(r"'([^']+)'", message)  # "The account-level service limit 'ml.g5.xlarge for spot ..."
        quota = named.group(1) if named else \
            f"ml.{instance_type} for {'spot ' if market == 'spot' else ''}training job usage"
        return LaunchRefused(code, message, LaunchRefused.QUOTA,
                             f"raise '{quota}' for Amazon SageMaker in Service Quotas for {region}")
    if code in CAPACITY_CODES:
        return LaunchRefused(code, message)
    return None


class SageMakerBackend(Backend):
    NAME = "sagemaker"
    RUN_PREFIX = "sm-"
    # no fallback instance type or market yet; `nodes: N` multi-node jobs (torchrun, see jobs.torchrun_processes)
    CAPABILITIES = frozenset({ANY_REPO, MULTI_NODE})

    @classmethod
    def list_price(cls, instance: InstanceSpec, region: str) -> float:
        return instance.sagemaker_price(region)

    @classmethod
    def check_settings(cls, settings, spec_data: dict, source: str) -> dict:
        settings = settings or {}
        if not isinstance(settings, dict) or set(settings) - {"role_arn", "image_uri", "max_wait_minutes"}:
            raise TrainfleetInputError(f"{source}: sagemaker must be {{role_arn, image_uri, max_wait_minutes}}")
        role = settings.get("role_arn")
        if role is not None and (not isinstance(role, str) or not ROLE_ARN.fullmatch(role)):
            raise TrainfleetInputError(f"{source}: sagemaker.role_arn {str(role)[:120]!r} is not an IAM role ARN "
                                       "(arn:aws:iam::<12-digit account>:role/<path/>name)")
        # no image_uri: each run gets the PyTorch training DLC for its instance type at launch (jobs.default_image)
        image = settings.get("image_uri")
        if image is not None and (not isinstance(image, str) or not image or any(c.isspace() for c in image)):
            raise TrainfleetInputError(f"{source}: sagemaker.image_uri must be an image URI")
        if spec_data.get("workload") and spec_data.get("setup"):  # the job runs the workload's script itself
            raise TrainfleetInputError(
                f"{source}: backend sagemaker does not run setup commands for a bundled workload (the SDK installs "
                "training_scripts/requirements.txt); drop setup, or run your own script from the repository")
        max_runtime = spec_data["max_runtime_minutes"]
        wait = validate_positive(settings.get("max_wait_minutes", 2 * max_runtime), f"{source}: sagemaker.max_wait_minutes")
        if wait < max_runtime:
            raise TrainfleetInputError(
                f"{source}: sagemaker.max_wait_minutes {wait} must be >= max_runtime_minutes {max_runtime}")
        return {"role_arn": role, "image_uri": image, "max_wait_minutes": wait}

    def quote(self, spec, instance: InstanceSpec, market: str, catalog: Catalog) -> PriceQuote:
        """The price of one run's job: `nodes` instances, each billed for the job's billable seconds
        (DescribeTrainingJob: BillableTimeInSeconds x InstanceCount), so that the estimate, the budget's worst
        case, live costs and the settled cost all count every instance."""
        nodes = getattr(spec, "nodes", 1)
        price = instance.sagemaker_price(spec.region) * nodes
        cluster = f"; {nodes} instances at ${price / nodes:.4f}/h each" if nodes > 1 else ""
        return PriceQuote(f"ml.{instance.name}", spec.region, market, price, price,
                          f"catalog price of {instance.sagemaker_date(spec.region)} (SageMaker training "
                          f"price{cluster}; spot savings show as billable < training seconds)", now_iso())

    def launch(self, spec, run, attempt: int, price: PriceQuote, catalog: Catalog) -> dict:
        jobs.require_sdk()
        from sagemaker.core.helper.session_helper import Session  # the optional [sagemaker] extra (about 1 GB)

        settings = spec.backend_settings or {}
        role_arn = settings.get("role_arn") or self.env.default_role("sagemaker.amazonaws.com")
        if not role_arn:
            raise TrainfleetInputError("backend: sagemaker needs sagemaker.role_arn (an execution role SageMaker can assume)")
        image = settings.get("image_uri") or jobs.default_image(spec.region, catalog.get(run.instance_type))
        bucket = self.env.infra.bucket
        with self.env.sdk_context(), tempfile.TemporaryDirectory(prefix="trainfleet-sm-") as staging:
            session = Session(boto_session=self.env.session(), default_bucket=bucket)
            staged = jobs.stage_source(Path(staging), spec, run)
            trainer = jobs.build_trainer(spec, run, bucket=bucket, role_arn=role_arn, attempt=attempt,
                                         source_dir=Path(staging), image=image, session=session)
            try:
                trainer.train(wait=False, logs=False)  # the SDK re-raises CreateTrainingJob's ClientError as is
            except ClientError as error:
                refused = launch_refusal(error, run.instance_type, price.market, spec.region)
                if refused is None:
                    raise
                raise refused from None
            job_name = jobs.created_job_name(trainer)
        return {"attempt": attempt, "backend": self.NAME, "job_name": job_name, "resource": job_name,
                "instance_type": run.instance_type,
                "market": price.market, "price": price.to_dict(), "image": image, "nodes": spec.nodes,
                "torchrun_processes_per_node": jobs.torchrun_processes(spec, run), **staged,
                "launched_at": now_iso(), "cost_usd": None,
                "outcome": "launched"}

    def __init__(self, env) -> None:
        super().__init__(env)
        self._created: dict = {}  # job name -> CreationTime, from the last listing

    def campaign_jobs(self, campaign: str, statuses: tuple[str, ...]) -> dict[str, tuple[str, str]]:
        """job name -> (run id, status) for the campaign's jobs in `statuses`, found by tag."""
        sagemaker, found = self.env.client("sagemaker"), {}
        for status in statuses:
            for page in sagemaker.get_paginator("list_training_jobs").paginate(StatusEquals=status):
                for summary in page["TrainingJobSummaries"]:
                    arn = summary["TrainingJobArn"]
                    tags = {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=arn).get("Tags", [])}
                    if tags.get(CAMPAIGN_TAG) == campaign:
                        found[summary["TrainingJobName"]] = (tags.get(RUN_TAG), status)
                        self._created[summary["TrainingJobName"]] = summary.get("CreationTime")
        return found

    def live(self, campaign: str) -> dict[str, RunState]:
        return {run_id: RunState(run_id, name, status)
                for name, (run_id, status) in self.campaign_jobs(campaign, LIVE_STATUSES).items() if run_id}

    def collect(self, spec: dict, run_id: str, record: dict) -> bool:
        last = record["attempts"][-1]
        if last.get("outcome") == "launching":  # the launcher died during CreateTrainingJob: did it start?
            jobs_now = self.campaign_jobs(spec["campaign"], ("InProgress", "Stopping", "Completed", "Failed", "Stopped"))
            mine = sorted(name for name, (run, _) in jobs_now.items()
                          if run == run_id and jobs.job_attempt(name) == last["attempt"])
            if mine:
                last.update(outcome="launched", job_name=mine[-1], resource=mine[-1])
            else:
                last.update(outcome="not_launched", cost_usd=0.0)
            return True

        instance = load_catalog().get(last["instance_type"])
        nodes = last.get("nodes") or 1  # the peaks are per instance; MFU counts the whole cluster's
        peak = {precision: value * nodes if value else None for precision, value in instance.peaks().items()}
        return jobs.collect_job(self.env.client("sagemaker"), self.env.client("s3"), self.env.infra.bucket,
                                spec["campaign"], run_id, record, peak_tflops=peak, target=spec.get("target"))

    def teardown(self, campaign: str) -> TeardownSummary:
        """Stop the campaign's running jobs (by tag); each stopped attempt is billed from the job's creation
        (the listing's CreationTime) to the stop call."""
        sagemaker, stopped, ended = self.env.client("sagemaker"), [], []
        for name, (run_id, status) in self.campaign_jobs(campaign, ("InProgress",)).items():
            try:
                sagemaker.stop_training_job(TrainingJobName=name)
            except sagemaker.exceptions.ClientError as error:  # finished meanwhile: nothing to stop
                if error.response.get("Error", {}).get("Code") != "ValidationException":
                    raise
                stopped.append(name)
                continue
            stopped.append(name)
            started = self._created.get(name)
            if run_id:
                ended.append({"run_id": run_id, "attempt": jobs.job_attempt(name),
                              "key": "job_name", "resource": name, "ended_at": now_iso(),
                              "started_at": started.isoformat(timespec="seconds") if started else None})
        return TeardownSummary(self.NAME, stopped, ended=ended)
