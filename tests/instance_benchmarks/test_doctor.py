"""`trainfleet doctor`: the checks against moto (the real stacks deployed into it), and each failure with its fix
from AWS's documented answers (botocore Stubber, which also checks every request and response against the
service's model, or a fake client where moto cannot answer)."""
from __future__ import annotations

import json

import boto3
import pytest
import yaml
from botocore.exceptions import NoCredentialsError
from botocore.stub import Stubber
from typer.testing import CliRunner

from instance_benchmarks.backends.ec2.instances import vcpu_quota_name
from instance_benchmarks.campaign_file import parse_spec
from instance_benchmarks.catalog import load_catalog
from instance_benchmarks.cli import app
from instance_benchmarks.core.contract import LAUNCHER_ACTIONS, MARKETS, TRAINFLEET_VERSION, VERSION_OUTPUT
from instance_benchmarks.doctor import (
    BOOTSTRAP, BOOTSTRAP_VERSION_PARAMETER, BUCKET, CREDENTIALS, FAIL, IMAGES, LAUNCHER, OK, QUOTA_CODES, QUOTAS, SKIP,
    SPOT_ROLE, SPOT_ROLE_CHECK, STUBBED, Account, StandIns, campaign_needs, check_bootstrap, check_bucket,
    check_credentials, check_images, check_launcher_policy, check_quotas, check_spot_role, check_stack, exit_status,
    run_checks, simulated_resources,
)
from instance_benchmarks.embedded.doctor import stand_in_clients
from tests.instance_benchmarks.conftest import REGION, spec_dict

ACCOUNT = Account(REGION, "123456789012", "arn:aws:iam::123456789012:user/alice")
CATALOG = load_catalog()
runner = CliRunner()


def client(service):
    return boto3.client(service, region_name=REGION)


def by_name(checks):
    return {check.name: check for check in checks}


def g4dn_campaign(**changes):
    return parse_spec(spec_dict(matrix={"instance_type": ["g4dn.xlarge", "c5.xlarge"], "batch_size": [3, 5]},
                                **changes))


# ----------------------------------------------------------------------------- all green against moto
def test_every_check_passes_against_the_deployed_stacks_with_the_stubbed_ones_named(infra):
    make, stand_ins = stand_in_clients(client)
    checks = run_checks(make, REGION, ssm_prefix="/trainfleet", catalog=CATALOG, spec=g4dn_campaign(),
                        stand_ins=stand_ins)
    found = by_name(checks)
    assert [c.name for c in checks if c.status == FAIL] == []
    assert found[BOOTSTRAP].status == SKIP and "not checkable on the embedded default" in found[BOOTSTRAP].detail
    assert exit_status(checks) == 0
    for name in (SPOT_ROLE_CHECK, LAUNCHER, *QUOTAS.values()):
        assert found[name].status == OK and found[name].detail.startswith(STUBBED), found[name]
    for name in ("stack Storage", "stack Network", "stack Compute"):
        assert found[name].status == OK and TRAINFLEET_VERSION in found[name].detail
    assert "(needs 8)" in found["spot vCPU quotas"].detail  # 2 runs x g4dn.xlarge, from the catalog
    assert found[IMAGES].detail.startswith("1 resolve (the Compute stack's): /trainfleet/local/ami-id")
    assert found[BUCKET].detail == f"s3://{infra.bucket}"


def test_on_aws_nothing_is_stubbed_and_what_moto_lacks_fails_with_a_fix(infra):
    """Without stand-ins moto answers as an account without the SLR would; quotas and simulation it lacks."""
    no_simulation = StandIns(not_checkable={LAUNCHER: "in-process moto raises NotImplementedError"})
    checks = by_name(run_checks(client, REGION, ssm_prefix="/trainfleet", catalog=CATALOG, stand_ins=no_simulation))
    assert checks[SPOT_ROLE_CHECK].status == FAIL
    assert checks[SPOT_ROLE_CHECK].fix == "aws iam create-service-linked-role --aws-service-name spot.amazonaws.com"
    assert checks[BOOTSTRAP].status == FAIL and checks[BOOTSTRAP].fix == f"npx cdk bootstrap aws://123456789012/{REGION}"
    assert checks["spot vCPU quotas"].status == FAIL and "cannot check" in checks["spot vCPU quotas"].detail
    assert not any(STUBBED in check.detail for check in checks.values()) and exit_status(list(checks.values())) == 1


# ----------------------------------------------------------------------------- each failure and its fix
def test_missing_credentials():
    class NoCredentials:
        def get_caller_identity(self):
            raise NoCredentialsError()

    check, account = check_credentials(NoCredentials(), REGION)
    assert account is None and check.status == FAIL and check.detail == "no AWS credentials found"
    assert "AWS_ACCESS_KEY_ID" in check.fix
    check, _ = check_credentials(None, None)
    assert check.detail == "no AWS region" and "--region" in check.fix


def test_rejected_credentials_and_the_checks_after_them_are_not_run():
    sts = boto3.client("sts", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y")
    with Stubber(sts) as stub:
        stub.add_client_error("get_caller_identity", "InvalidClientTokenId", "The security token included in the "
                              "request is invalid.", 403)
        checks = run_checks(lambda service: sts, REGION, ssm_prefix="/trainfleet", catalog=CATALOG)
    assert checks[0].status == FAIL and "InvalidClientTokenId" in checks[0].detail and "refresh" in checks[0].fix
    assert all(check.status == SKIP for check in checks[1:]) and len(checks) == 11
    assert exit_status(checks) == 1


def test_no_bootstrap_stack(aws):
    check = check_bootstrap(client("cloudformation"), client("ssm"), ACCOUNT)
    assert check.status == FAIL and check.detail == f"no CDKToolkit stack in {REGION}"
    assert check.fix == f"npx cdk bootstrap aws://123456789012/{REGION}"


@pytest.mark.parametrize("version, status", [("5", FAIL), ("30", OK)])
def test_bootstrap_version_parameter(aws, version, status):
    cloudformation, ssm = client("cloudformation"), client("ssm")
    cloudformation.create_stack(StackName="CDKToolkit", TemplateBody=json.dumps({"Resources": {
        "Topic": {"Type": "AWS::SNS::Topic"}}}))
    ssm.put_parameter(Name=BOOTSTRAP_VERSION_PARAMETER, Value=version, Type="String")
    check = check_bootstrap(cloudformation, ssm, ACCOUNT)
    assert check.status == status, check
    if status == FAIL:
        assert "version 5, this app needs 6" in check.detail and check.fix.startswith("npx cdk bootstrap")


def test_stacks_missing(aws):
    checks = by_name(run_checks(client, REGION, ssm_prefix="/trainfleet", catalog=CATALOG))
    for name in ("Storage", "Network", "Compute"):
        assert checks[f"stack {name}"].status == FAIL and checks[f"stack {name}"].detail == "not deployed"
        assert checks[f"stack {name}"].fix == "npx cdk deploy Storage Network Compute"
    assert checks[BUCKET].status == FAIL and "missing SSM parameter" in checks[BUCKET].detail
    assert checks[LAUNCHER].status == SKIP
    # without a Compute stack the catalog's parameters are checked: moto has neither public AMI parameter
    assert checks[IMAGES].status == FAIL and "(the catalog's)" in checks[IMAGES].detail


@pytest.mark.parametrize("outputs, built", [
    ([{"OutputKey": VERSION_OUTPUT, "OutputValue": "0.0.9"}], "built from trainfleet '0.0.9'"),
    ([], f"built from a trainfleet without the {VERSION_OUTPUT} output"),
])
def test_stacks_from_another_version(outputs, built):
    check = check_stack({"StackName": "Compute", "StackStatus": "UPDATE_COMPLETE", "Outputs": outputs}, "Compute")
    assert check.status == FAIL and built in check.detail and check.fix.endswith("npx cdk deploy Storage Network Compute")


def test_a_stack_still_deploying_or_rolled_back():
    assert check_stack({"StackStatus": "UPDATE_IN_PROGRESS"}, "Compute").fix == "wait for it to finish"
    assert "describe-stack-events" in check_stack({"StackStatus": "ROLLBACK_COMPLETE"}, "Network").fix


def test_missing_spot_service_linked_role(aws):
    iam = client("iam")
    check = check_spot_role(iam)
    assert check.status == FAIL and "first spot launch would fail" in check.detail
    # what the fix line creates on AWS (moto's create_service_linked_role names it AWSServiceRoleForspot)
    iam.create_role(RoleName=SPOT_ROLE, Path="/aws-service-role/spot.amazonaws.com/", AssumeRolePolicyDocument="{}")
    assert check_spot_role(iam).status == OK


def test_spot_role_unreadable_is_a_failure_naming_the_permission(aws):
    iam = client("iam")
    with Stubber(iam) as stub:
        stub.add_client_error("get_role", "AccessDenied", "not authorized to perform: iam:GetRole", 403)
        checks = by_name(run_checks(lambda service: iam if service == "iam" else client(service), REGION,
                                    ssm_prefix="/trainfleet", catalog=CATALOG))
    assert checks[SPOT_ROLE_CHECK].status == FAIL and checks[SPOT_ROLE_CHECK].detail == "cannot check (AccessDenied)"
    assert checks[SPOT_ROLE_CHECK].fix.startswith("allow iam:GetRole for the caller")


def quota_stub(values: dict[str, float]):
    """Service Quotas answering GetServiceQuota with `values` (quota code -> vCPUs), in QUOTA_CODES's order."""
    quotas = boto3.client("service-quotas", region_name=REGION)
    stub = Stubber(quotas)
    for market in MARKETS:
        for name, code in QUOTA_CODES.items():
            if name.endswith("Spot Instance Requests") == (market == "spot"):
                stub.add_response("get_service_quota", {"Quota": {
                    "ServiceCode": "ec2", "QuotaCode": code, "QuotaName": name, "Value": values.get(code, 0.0)}},
                    {"ServiceCode": "ec2", "QuotaCode": code})
    return quotas, stub


def test_quota_too_low_for_the_campaign():
    spec = g4dn_campaign()  # 2 x g4dn.xlarge (4 vCPUs) and 2 x c5.xlarge (4 vCPUs), spot
    needs = campaign_needs(spec, CATALOG)
    assert needs == {"All G and VT Spot Instance Requests": 8,
                     "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests": 8}
    quotas, stub = quota_stub({"L-3819A6DF": 4.0, "L-34B43A08": 640.0})
    with stub:
        spot = check_quotas(quotas, ACCOUNT, "spot", needs, spec.campaign)
        on_demand = check_quotas(quotas, ACCOUNT, "on-demand", needs, spec.campaign)
    assert spot.status == FAIL and "G and VT 4 (needs 8)" in spot.detail and "Standard 640 (needs 8)" in spot.detail
    assert spot.fix == (f"aws service-quotas request-service-quota-increase --region {REGION} --service-code ec2 "
                        "--quota-code L-3819A6DF --desired-value 8")
    assert on_demand.status == OK  # a spot campaign without fallback needs no on-demand vCPUs


def test_a_fallback_counts_against_its_own_quota():
    spec = g4dn_campaign(fallback={"market": "on-demand"})
    needs = campaign_needs(spec, CATALOG)
    assert needs["Running On-Demand G and VT instances"] == 8 and needs["All G and VT Spot Instance Requests"] == 8
    assert campaign_needs(g4dn_campaign(fallback={"instance_type": "g5.2xlarge"}), CATALOG)[
        "All G and VT Spot Instance Requests"] == 32  # the worse of 8 and 4 x 8


def test_a_sagemaker_campaign_needs_no_ec2_vcpus():
    from instance_benchmarks.campaign_file import load_spec

    spec = load_spec("examples/campaign-sagemaker.yaml")
    assert campaign_needs(spec, CATALOG) == {}
    quotas, stub = quota_stub({})
    with stub:
        check = check_quotas(quotas, ACCOUNT, "spot", {}, spec.campaign)
    assert check.status == OK and "quotas are SageMaker's" in check.detail


def test_every_catalog_type_has_a_quota_code():
    for spec in CATALOG.instances.values():
        for market in MARKETS:
            assert vcpu_quota_name(spec.name, market) in QUOTA_CODES, (spec.name, market)


def test_a_denied_launcher_action(infra):
    """SimulatePrincipalPolicy (stubbed: moto has none) denies RunInstances from the launch templates."""
    moto_iam = client("iam")
    targets = simulated_resources(moto_iam, ACCOUNT, infra, "/trainfleet")
    assert set(targets) == set(LAUNCHER_ACTIONS)  # every statement's actions are simulated
    iam = client("iam")
    name = infra.instance_profile_arn.rsplit("/", 1)[1]
    role = moto_iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]["Roles"][0]
    created = role["CreateDate"]
    profile = {"InstanceProfile": {  # GetInstanceProfile's documented shape, the role as moto made it
        "Path": "/", "InstanceProfileName": name, "InstanceProfileId": "AIPAEXAMPLEPROFILE01",
        "Arn": infra.instance_profile_arn,
        "CreateDate": created, "Roles": [{"Path": role["Path"], "RoleName": role["RoleName"], "RoleId": role["RoleId"],
                                          "Arn": role["Arn"], "CreateDate": created}]}}
    with Stubber(iam) as stub:
        stub.add_response("get_instance_profile", profile)
        for sid, resources in targets.items():
            for resource, context in resources:
                decision = "implicitDeny" if sid == "RunFromTrainfleetTemplates" and "launch-template" in resource \
                    else "allowed"
                stub.add_response("simulate_principal_policy", {"EvaluationResults": [
                    {"EvalActionName": action, "EvalResourceName": resource, "EvalDecision": decision}
                    for action in LAUNCHER_ACTIONS[sid]], "IsTruncated": False},
                    {"PolicySourceArn": ACCOUNT.arn, "ActionNames": list(LAUNCHER_ACTIONS[sid]),
                     "ResourceArns": [resource],
                     "ContextEntries": [{"ContextKeyName": k, "ContextKeyValues": [v], "ContextKeyType": "string"}
                                        for k, v in context.items()]})
        check = check_launcher_policy(iam, ACCOUNT, infra, "/trainfleet", "arn:aws:iam::123456789012:policy/tl")
        stub.assert_no_pending_responses()
    templates = {entry[m] for entry in infra.launch_templates.values() for m in MARKETS}
    assert check.status == FAIL and f"denied {len(templates)} of" in check.detail
    assert "ec2:RunInstances on launch-template/lt-" in check.detail and "(implicitDeny)" in check.detail
    assert check.fix.startswith("attach arn:aws:iam::123456789012:policy/tl to the caller")


def test_an_assumed_role_is_simulated_as_its_role(infra):
    iam = client("iam")
    role = iam.create_role(RoleName="launcher", Path="/team/", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    make, _ = stand_in_clients(client)
    caller = Account(REGION, ACCOUNT.account, "arn:aws:sts::123456789012:assumed-role/launcher/alice")
    check = check_launcher_policy(make("iam"), caller, infra, "/trainfleet", None)
    assert check.status == OK and check.detail.startswith(f"{role}: all ")
    assert role == "arn:aws:iam::123456789012:role/team/launcher"


def test_unresolvable_image_parameter(aws):
    ssm = client("ssm")
    ssm.put_parameter(Name="/trainfleet/local/ami-id", Value="ami-12345678", Type="String")
    check = check_images(ssm, ACCOUNT, ["/aws/service/nowhere/ami-id", "/trainfleet/local/ami-id"], "the catalog's")
    assert check.status == FAIL and check.detail == f"not in {REGION}: /aws/service/nowhere/ami-id (the catalog's)"
    assert "-c ami_parameter=" in check.fix


def test_unreachable_bucket(infra):
    s3 = client("s3")
    with Stubber(s3) as stub:  # HeadBucket has no body: the code is the status
        stub.add_client_error("head_bucket", "403", "Forbidden", 403)
        check = check_bucket(s3, infra)
    assert check.status == FAIL and f"bucket {infra.bucket!r} is not reachable (403)" in check.detail
    assert "Storage" in check.fix
    s3.delete_bucket(Bucket=infra.bucket)
    assert "(404)" in check_bucket(s3, infra).detail


# ----------------------------------------------------------------------------- the command
def test_doctor_prints_one_table_and_exits_1_when_a_check_fails(aws):
    result = runner.invoke(app, ["doctor", "--region", REGION], env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    assert "spot service-linked role" in result.output and "create-service-linked-role" in result.output
    assert "npx cdk deploy Storage Network Compute" in result.output  # nothing is deployed in this moto
    assert "check(s) failed" in result.output


def test_bad_input_exits_2_before_any_aws_call(tmp_path):
    from tests.instance_benchmarks.test_cli import _trainfleet

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(spec_dict(matrix={"instance_type": ["c5.xlarge"], "batch_size": [-3]})))
    for args, message in ((["--campaign", str(bad)], "batch_size must be positive"),
                          (["--region", "mars-north-1"], "unknown region 'mars-north-1'"),
                          (["--campaign", "examples/campaign.yaml", "--region", "eu-west-1"], "differs from")):
        result = _trainfleet("doctor", *args, env={"PATH": "/usr/bin:/bin", "AWS_ACCESS_KEY_ID": "x",
                                                   "AWS_SECRET_ACCESS_KEY": "y", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stderr.startswith("error: ") and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""
