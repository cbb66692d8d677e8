"""`trainfleet doctor`: is this account and region ready for a first campaign? One table, a fix per failure.

Every check is one function over boto3 clients that returns a `Check` (name, ok/fail/skip, detail, fix) and
only reads: STS GetCallerIdentity; CloudFormation DescribeStacks (CDKToolkit, Storage, Network, Compute);
SSM GetParameter(s) (the CDK bootstrap version, the images' AMI parameters, the Compute stack's exports);
IAM GetRole, GetInstanceProfile and SimulatePrincipalPolicy; Service Quotas GetServiceQuota; S3 HeadBucket.
Nothing is created, changed or deleted.

On the embedded default (`--local`) the same checks run against moto's server; what moto lacks is answered
by stand-ins in `embedded/doctor.py` and named "stubbed on the embedded default" in the table.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from rich.table import Table
from rich.text import Text

from instance_benchmarks.backends.ec2.instances import vcpu_quota_name
from instance_benchmarks.backends.infrastructure import DEPLOY, Infrastructure, require_bucket, resolve_infrastructure
from instance_benchmarks.campaign_file import load_spec
from instance_benchmarks.catalog import load_catalog
from instance_benchmarks.core.contract import (
    CAMPAIGN_TAG, LAUNCHER_ACTIONS, MARKETS, SPOT_SERVICE, SPOT_SERVICE_LINKED_ROLE, SSM_EXPORTS, STACKS,
    TRAINFLEET_VERSION, VERSION_OUTPUT,
)
from instance_benchmarks.core.errors import TrainfleetInputError

OK, FAIL, SKIP = "ok", "fail", "skip"
STUBBED = "stubbed on the embedded default"

# The CDK bootstrap stack of the default qualifier, and the oldest version this app's assembly accepts
# (its manifest's requiresBootstrapStackVersion; tests/stacks/test_version.py keeps them equal).
BOOTSTRAP_STACK = "CDKToolkit"
BOOTSTRAP_VERSION_PARAMETER = "/cdk-bootstrap/hnb659fds/version"
BOOTSTRAP_VERSION = 6
SPOT_ROLE = "AWSServiceRoleForEC2Spot"  # created by `aws iam create-service-linked-role --aws-service-name spot...`
# Service Quotas codes (service code "ec2") of the vCPU quotas backends/ec2/instances.vcpu_quota_name names for
# the catalog's families (EC2 User Guide, "Spot Instance quotas" and "On-Demand Instance quotas").
QUOTA_CODES = {
    "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests": "L-34B43A08",
    "All G and VT Spot Instance Requests": "L-3819A6DF",
    "All P4, P3 and P2 Spot Instance Requests": "L-7212CCBC",
    "All P5 Spot Instance Requests": "L-C4BD4855",
    "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances": "L-1216C47A",
    "Running On-Demand G and VT instances": "L-DB2E81BA",
    "Running On-Demand P instances": "L-417A185B",
}
READY = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE",
         "IMPORT_ROLLBACK_COMPLETE")
# The names of the checks, in the table's order (stand-ins and tests refer to them).
CREDENTIALS, BOOTSTRAP, SPOT_ROLE_CHECK, LAUNCHER, IMAGES, BUCKET = (
    "credentials and region", "CDK bootstrap", "spot service-linked role", "launcher policy", "image parameters",
    "artifact bucket")
QUOTAS = {market: f"{market} vCPU quotas" for market in MARKETS}


@dataclass(frozen=True)
class Check:
    name: str
    status: str        # OK, FAIL or SKIP (not checkable here, or not checked because an earlier check failed)
    detail: str
    fix: str = ""      # what to do about a failure: a command where there is one


@dataclass(frozen=True)
class Account:
    """Who is asking, where: what the checks after the first one need."""

    region: str
    account: str
    arn: str
    partition: str = "aws"


@dataclass(frozen=True)
class StandIns:
    """Checks an environment answers without AWS: `stubbed` (name -> what stands in), `not_checkable`
    (name -> why it does not apply there). On AWS both are empty."""

    stubbed: Mapping[str, str] = field(default_factory=dict)
    not_checkable: Mapping[str, str] = field(default_factory=dict)


def error_code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "") or str(error)


def cannot_check(name: str, error: Exception, needs: str) -> Check:
    """A check whose read AWS refused (no permission, throttled, ...): a failure naming what the caller needs."""
    reason = error_code(error) if isinstance(error, ClientError) else f"{type(error).__name__}: {error}"
    return Check(name, FAIL, f"cannot check ({reason})", f"allow {needs} for the caller, or run doctor as an admin")


# ----------------------------------------------------------------------------- the checks
def check_credentials(sts, region: str | None) -> tuple[Check, Account | None]:
    """STS GetCallerIdentity in `region` (the one the launcher will use)."""
    if not region:
        return Check(CREDENTIALS, FAIL, "no AWS region",
                     "pass --region or set AWS_REGION (or a profile's region)"), None
    try:
        identity = sts.get_caller_identity()
    except NoCredentialsError:
        return Check(CREDENTIALS, FAIL, "no AWS credentials found",
                     "configure a profile (`aws configure`, AWS_PROFILE) or set AWS_ACCESS_KEY_ID and "
                     "AWS_SECRET_ACCESS_KEY"), None
    except ClientError as error:
        return Check(CREDENTIALS, FAIL, f"AWS rejected the credentials ({error_code(error)})",
                     "refresh them (`aws sso login`, new access keys) and try again"), None
    except BotoCoreError as error:
        return Check(CREDENTIALS, FAIL, f"cannot reach STS in {region}: {error}",
                     "check the region's name and the network"), None
    account = Account(region, identity["Account"], identity["Arn"], identity["Arn"].split(":")[1])
    return Check(CREDENTIALS, OK, f"{account.arn} in {region}"), account


def describe_stack(cloudformation, name: str) -> dict | None:
    """The stack called `name`, or None where there is none (DescribeStacks answers ValidationError)."""
    try:
        return cloudformation.describe_stacks(StackName=name)["Stacks"][0]
    except ClientError as error:
        if error_code(error) == "ValidationError" and "does not exist" in str(error):
            return None
        raise


def check_bootstrap(cloudformation, ssm, account: Account) -> Check:
    """The CDK bootstrap stack, and its version parameter no older than the app's assembly needs."""
    bootstrap = f"npx cdk bootstrap aws://{account.account}/{account.region}"
    stack = describe_stack(cloudformation, BOOTSTRAP_STACK)
    if stack is None:
        return Check(BOOTSTRAP, FAIL, f"no {BOOTSTRAP_STACK} stack in {account.region}", bootstrap)
    if stack["StackStatus"] not in READY:
        return Check(BOOTSTRAP, FAIL, f"{BOOTSTRAP_STACK} is {stack['StackStatus']}", f"wait, or rerun `{bootstrap}`")
    try:
        version = ssm.get_parameter(Name=BOOTSTRAP_VERSION_PARAMETER)["Parameter"]["Value"]
    except ClientError as error:
        if error_code(error) != "ParameterNotFound":
            raise
        return Check(BOOTSTRAP, FAIL, f"{BOOTSTRAP_STACK} exists but {BOOTSTRAP_VERSION_PARAMETER} does not "
                     "(bootstrapped with another qualifier?)", bootstrap)
    if not version.isdigit() or int(version) < BOOTSTRAP_VERSION:
        return Check(BOOTSTRAP, FAIL, f"bootstrap version {version}, this app needs {BOOTSTRAP_VERSION} or newer",
                     f"{bootstrap}   # upgrades the stack in place")
    return Check(BOOTSTRAP, OK, f"{BOOTSTRAP_STACK} {stack['StackStatus']}, version {version}")


def output(stack: dict, key: str) -> str | None:
    return next((o["OutputValue"] for o in stack.get("Outputs", []) if o["OutputKey"] == key), None)


def check_stack(stack: dict | None, name: str) -> Check:
    """One of STACKS: deployed, settled, and built from this trainfleet version (its VERSION_OUTPUT)."""
    title = f"stack {name}"
    if stack is None:
        return Check(title, FAIL, "not deployed", DEPLOY)
    status = stack["StackStatus"]
    if status not in READY:
        fix = "wait for it to finish" if status.endswith("_IN_PROGRESS") else \
            f"see `aws cloudformation describe-stack-events --stack-name {name}`, then `{DEPLOY}`"
        return Check(title, FAIL, status, fix)
    version = output(stack, VERSION_OUTPUT)
    if version != TRAINFLEET_VERSION:
        built = f"trainfleet {version[:40]!r}" if version else f"a trainfleet without the {VERSION_OUTPUT} output"
        return Check(title, FAIL, f"{status}, built from {built}; this is trainfleet {TRAINFLEET_VERSION}",
                     f"redeploy from this checkout: {DEPLOY}")
    return Check(title, OK, f"{status}, trainfleet {version}")


def check_spot_role(iam) -> Check:
    """EC2 Spot's service-linked role: without it (and without iam:CreateServiceLinkedRole for the launcher)
    a spot RunInstances fails with AuthFailure.ServiceLinkedRoleCreationNotPermitted."""
    try:
        role = iam.get_role(RoleName=SPOT_ROLE)["Role"]
    except ClientError as error:
        if error_code(error) != "NoSuchEntity":
            raise
        return Check(SPOT_ROLE_CHECK, FAIL, f"{SPOT_ROLE} does not exist: the first spot launch would fail",
                     "aws iam create-service-linked-role --aws-service-name spot.amazonaws.com")
    return Check(SPOT_ROLE_CHECK, OK, role["Arn"])


def campaign_needs(spec, catalog) -> Counter:
    """vCPUs per quota name that the campaign's runs need at once (the runner launches every pending run
    together): its market, and, with a fallback, the worst of all runs on the fallback instead."""
    if spec.backend != "ec2":
        return Counter()
    scenarios = [(None, spec.market)]
    if spec.fallback:
        scenarios.append((spec.fallback.get("instance_type"), spec.fallback.get("market", spec.market)))
    needs: Counter = Counter()
    for instance_type, market in scenarios:
        scenario: Counter = Counter()
        for run in spec.runs():
            name = instance_type or run.instance_type
            scenario[vcpu_quota_name(name, market)] += catalog.get(name).vcpus
        for quota, vcpus in scenario.items():
            needs[quota] = max(needs[quota], vcpus)
    return needs


def quota_market(quota: str) -> str:
    return "spot" if quota.endswith("Spot Instance Requests") else "on-demand"


def check_quotas(quotas, account: Account, market: str, needs: Mapping[str, int], campaign: str | None) -> Check:
    """Service Quotas GetServiceQuota for each of `market`'s vCPU quotas (QUOTA_CODES): each at least what
    the campaign needs; without a campaign, the values."""
    name, parts, short = QUOTAS[market], [], []
    for quota, code in QUOTA_CODES.items():
        if quota_market(quota) != market:
            continue
        value = quotas.get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"]
        need = needs.get(quota, 0)
        label = quota.replace(" Spot Instance Requests", "").replace("Running On-Demand ", "").replace(" instances", "")
        label = label.replace("All ", "").replace(" (A, C, D, H, I, M, R, T, Z)", "")
        parts.append(f"{label} {value:g}" + (f" (needs {need})" if need else ""))
        if need > value:
            short.append(f"aws service-quotas request-service-quota-increase --region {account.region} "
                         f"--service-code ec2 --quota-code {code} --desired-value {need}")
    unknown = sorted(q for q in needs if quota_market(q) == market and q not in QUOTA_CODES)
    if unknown:
        return Check(name, FAIL, f"no quota code known for {', '.join(unknown)}",
                     "check it in the Service Quotas console")
    detail = "; ".join(parts) + ("" if campaign else " (give --campaign to compare with a campaign's needs)")
    if campaign and not needs:
        detail += f" ({campaign} launches no EC2 instances: a SageMaker campaign's quotas are SageMaker's)"
    if short:
        return Check(name, FAIL, f"too low for {campaign}: {detail}", "; ".join(short))
    return Check(name, OK, detail)


def principal_arn(iam, caller: str) -> str | None:
    """The IAM user or role behind a caller ARN (an assumed role's role, path included), or None for the root
    user; SimulatePrincipalPolicy takes no STS session ARN."""
    kind = caller.split(":", 5)[5]
    if kind == "root":
        return None
    if kind.startswith("assumed-role/"):
        return iam.get_role(RoleName=kind.split("/")[1])["Role"]["Arn"]
    if kind.startswith("user/"):
        return caller
    raise TrainfleetInputError(f"cannot simulate policies for {caller}: run doctor as the IAM user or role that launches")


def simulated_resources(iam, account: Account, infra: Infrastructure, prefix: str) -> dict[str, list[tuple]]:
    """Statement id (LAUNCHER_ACTIONS) -> the (resource ARN, context keys) its actions are simulated on: the
    resources the launcher's calls name, with the tags and keys its conditions test."""
    def ec2(resource: str) -> str:
        return f"arn:{account.partition}:ec2:{account.region}:{account.account}:{resource}"

    bucket = f"arn:{account.partition}:s3:::{infra.bucket}"
    profile = iam.get_instance_profile(InstanceProfileName=infra.instance_profile_arn.rsplit("/", 1)[1])
    role = profile["InstanceProfile"]["Roles"][0]["Arn"]
    templates = sorted({entry[market] for entry in infra.launch_templates.values() for market in MARKETS})
    tagged = {f"aws:RequestTag/{CAMPAIGN_TAG}": "doctor"}
    return {
        "RunFromTrainfleetTemplates": [(ec2(f"launch-template/{t}"), {}) for t in templates]
        + [(ec2(f"subnet/{s}"), {}) for s in infra.subnet_ids] + [(ec2(f"security-group/{infra.security_group_id}"), {})],
        "RunCampaignTaggedInstances": [(ec2("instance/*"), tagged)],
        "TagOnlyAtLaunch": [(ec2("instance/*"), {"ec2:CreateAction": "RunInstances", **tagged})],
        "EndCampaignTaggedOnly": [(ec2("instance/*"), {f"aws:ResourceTag/{CAMPAIGN_TAG}": "doctor"})],
        "DescribeInstancesAndSpot": [("*", {})],
        "CreateSpotServiceLinkedRole": [(f"arn:{account.partition}:iam::{account.account}:role/{SPOT_SERVICE_LINKED_ROLE}",
                                         {"iam:AWSServiceName": SPOT_SERVICE})],
        "PassInstanceRoleToEc2": [(role, {"iam:PassedToService": "ec2.amazonaws.com"})],
        "ListArtifactBucket": [(bucket, {})],
        "ReadWriteCampaigns": [(f"{bucket}/campaigns/doctor", {})],
        "ReadExports": [(f"arn:{account.partition}:ssm:{account.region}:{account.account}:parameter{prefix}/"
                         f"{SSM_EXPORTS['bucket']}", {})],
    }


def check_launcher_policy(iam, account: Account, infra: Infrastructure, prefix: str, policy_arn: str | None) -> Check:
    """IAM SimulatePrincipalPolicy of every action the launcher calls (LAUNCHER_ACTIONS) for the caller, on the
    resources the launcher names."""
    attach = (f"attach {policy_arn or 'the Compute stack output LauncherPolicyArn'} to the caller "
              "(`aws iam attach-user-policy` / `attach-role-policy`, README: Deploying to AWS)")
    try:
        principal = principal_arn(iam, account.arn)
    except TrainfleetInputError as error:
        return Check(LAUNCHER, FAIL, str(error), attach)
    if principal is None:
        return Check(LAUNCHER, OK, "the root user may do everything (better: an IAM user or role with the launcher "
                                   "policy)")
    denied, checked = [], 0
    for sid, targets in simulated_resources(iam, account, infra, prefix).items():
        for resource, context in targets:
            entries = [{"ContextKeyName": key, "ContextKeyValues": [value], "ContextKeyType": "string"}
                       for key, value in context.items()]
            pages = iam.get_paginator("simulate_principal_policy").paginate(
                PolicySourceArn=principal, ActionNames=list(LAUNCHER_ACTIONS[sid]), ResourceArns=[resource],
                ContextEntries=entries)
            for page in pages:
                for result in page["EvaluationResults"]:
                    checked += 1
                    if result["EvalDecision"] != "allowed":
                        denied.append(f"{result['EvalActionName']} on {resource.rsplit(':', 1)[-1]} "
                                      f"({result['EvalDecision']})")
    if denied:
        return Check(LAUNCHER, FAIL, f"{principal} is denied {len(denied)} of {checked}: {'; '.join(denied)}", attach)
    return Check(LAUNCHER, OK, f"{principal}: all {checked} launcher calls allowed")


def image_parameters(cloudformation, compute: dict | None, catalog) -> tuple[list[str], str]:
    """The AMI parameters the deployed Compute stack resolves at deploy (its template's parameters of type
    AWS::SSM::Parameter::Value<...>, context overrides included), else the catalog's `images`; and whose."""
    if compute is not None:
        body = cloudformation.get_template(StackName=compute["StackName"])["TemplateBody"]
        parameters = (json.loads(body) if isinstance(body, str) else body).get("Parameters", {})
        names = sorted({p["Default"] for p in parameters.values()
                        if str(p.get("Type", "")).startswith("AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>")
                        and str(p.get("Default", "")).startswith("/")})
        if names:
            return names, "the Compute stack's"
    return sorted({image.ssm_parameter for image in catalog.images.values()}), "the catalog's"


def check_images(ssm, account: Account, names: list[str], source: str) -> Check:
    """SSM GetParameters of the images' AMI parameters in the region (at most 10 names a call)."""
    missing = []
    for start in range(0, len(names), 10):
        missing += ssm.get_parameters(Names=names[start:start + 10]).get("InvalidParameters", [])
    if missing:
        return Check(IMAGES, FAIL, f"not in {account.region}: {', '.join(missing)} ({source})",
                     "deploy where the images are published, or set -c ami_parameter=... / -c cpu_ami_parameter=... "
                     "to parameters this region has and redeploy Compute")
    return Check(IMAGES, OK, f"{len(names)} resolve ({source}): {', '.join(names)}")


def check_bucket(s3, infra: Infrastructure) -> Check:
    """S3 HeadBucket of the artifact bucket the Compute stack exported."""
    try:
        require_bucket(s3, infra.bucket)
    except TrainfleetInputError as error:
        return Check(BUCKET, FAIL, str(error), f"deploy the Storage stack here ({DEPLOY}), or check the region")
    return Check(BUCKET, OK, f"s3://{infra.bucket}")


# ----------------------------------------------------------------------------- all of them
def run_checks(client: Callable[[str], object], region: str | None, *, ssm_prefix: str, catalog,
               spec=None, stand_ins: StandIns = StandIns()) -> list[Check]:
    """Every check, in the table's order; a check that needs an earlier one's answer is skipped when that
    failed. `client(service)` makes the clients; `stand_ins` names what the environment answers itself."""
    checks: list[Check] = []

    def run(name: str, needs: str, check: Callable[[], Check | list[Check]]) -> None:
        if name in stand_ins.not_checkable:
            checks.append(Check(name, SKIP, f"not checkable on the embedded default: {stand_ins.not_checkable[name]}"))
            return
        try:
            found = check()
        except (ClientError, BotoCoreError) as error:
            found = cannot_check(name, error, needs)
        if name in stand_ins.stubbed:
            found = replace(found, detail=f"{STUBBED} ({stand_ins.stubbed[name]}): {found.detail}")
        checks.append(found)

    first, account = check_credentials(client("sts") if region else None, region)
    checks.append(first)
    if account is None:
        return checks + [Check(name, SKIP, "not checked: needs credentials and a region") for name in later_names()]
    cloudformation = client("cloudformation")
    run(BOOTSTRAP, "cloudformation:DescribeStacks and ssm:GetParameter",
        lambda: check_bootstrap(cloudformation, client("ssm"), account))
    stacks: dict[str, dict | None] = {}
    for name in STACKS:
        def stack_check(name=name) -> Check:
            stacks[name] = describe_stack(cloudformation, name)
            return check_stack(stacks[name], name)

        run(f"stack {name}", "cloudformation:DescribeStacks", stack_check)
    run(SPOT_ROLE_CHECK, "iam:GetRole", lambda: check_spot_role(client("iam")))
    needs = campaign_needs(spec, catalog) if spec is not None else Counter()
    for market in MARKETS:
        run(QUOTAS[market], "servicequotas:GetServiceQuota",
            lambda market=market: check_quotas(client("service-quotas"), account, market, needs,
                                               spec.campaign if spec is not None else None))
    try:
        infra = resolve_infrastructure(client("ssm"), ssm_prefix)
    except TrainfleetInputError as error:
        infra, missing = None, str(error)
    except ClientError as error:
        infra, missing = None, f"cannot read the {ssm_prefix} exports ({error_code(error)})"
    compute = stacks.get("Compute")
    if infra is None:
        checks.append(Check(LAUNCHER, SKIP, f"not checked: {missing}"))
    else:
        run(LAUNCHER, "iam:SimulatePrincipalPolicy, iam:GetRole and iam:GetInstanceProfile",
            lambda: check_launcher_policy(client("iam"), account, infra, ssm_prefix,
                                          output(compute, "LauncherPolicyArn") if compute else None))
    run(IMAGES, "cloudformation:GetTemplate and ssm:GetParameters",
        lambda: check_images(client("ssm"), account, *image_parameters(cloudformation, compute, catalog)))
    if infra is None:
        checks.append(Check(BUCKET, FAIL, missing, DEPLOY))
    else:
        run(BUCKET, "s3:ListBucket on the artifact bucket", lambda: check_bucket(client("s3"), infra))
    return checks


def later_names() -> list[str]:
    return [BOOTSTRAP, *(f"stack {name}" for name in STACKS), SPOT_ROLE_CHECK, *QUOTAS.values(), LAUNCHER, IMAGES,
            BUCKET]


def exit_status(checks: list[Check]) -> int:
    """0 when nothing failed (a skip is only ever a check not checkable on the embedded default, or one after a
    failure), else 1."""
    return 1 if any(check.status == FAIL for check in checks) else 0


def table(checks: list[Check], title: str):


    rendered = Table(title=title, title_justify="left", show_lines=False)
    for heading in ("check", "result", "detail", "fix"):
        rendered.add_column(heading, overflow="fold")
    style = {OK: "green", FAIL: "bold red", SKIP: "yellow"}
    for check in checks:  # Text, not markup: details quote what AWS and the stacks answered
        rendered.add_row(Text(check.name), Text(check.status, style=style[check.status]), Text(check.detail),
                         Text(check.fix or "-"))
    return rendered


def doctor(make_environment: Callable, region: str | None, campaign_file, console) -> int:
    """The `trainfleet doctor` command: load the campaign (a bad one is an input error, before any AWS call),
    run the checks in its region (or `region`), print the table; the exit status."""
    catalog, spec = load_catalog(), None
    if campaign_file is not None:
        spec = load_spec(campaign_file, catalog)
        if region and region != spec.region:
            raise TrainfleetInputError(f"--region {region} differs from the campaign's region {spec.region}: "
                                       "the quotas that count are the campaign's region's")
        region = spec.region
    if region:
        catalog.require_region(region)
    env = make_environment(region)
    client, stand_ins = env.doctor_clients()
    where = region or env.session().region_name  # else the profile's, as every command's clients use
    checks = run_checks(client, where, ssm_prefix=env.ssm_prefix, catalog=catalog, spec=spec, stand_ins=stand_ins)
    console.print(table(checks, f"trainfleet doctor: {where or 'no region'}" + (f", campaign {spec.campaign}" if spec
                                                                                 else "")))
    failed = sum(check.status == FAIL for check in checks)
    console.print(f"{failed} check(s) failed" if failed else "ready: every check passed (nothing was changed)",
                  markup=False, highlight=False)
    return exit_status(checks)
