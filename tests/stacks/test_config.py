import pytest

from instance_benchmarks.catalog import load_catalog
from instance_benchmarks.core.errors import TrainfleetInputError
from stacks.config import config_from_context

GOOD = {"instance_type": "c5.xlarge", "repo": "https://github.com/acme/train.git", "ref": "main", "script": "train.py"}


def _config(**context):
    return config_from_context(context.get)


def test_defaults_without_job():
    config = _config()
    assert config.job is None and config.max_azs == 2


def test_a_job_can_run_task_commands_in_a_workdir():
    job = _config(**{**GOOD, "script": None}, workdir="word_language_model", setup="pip install -r requirements.txt",
                  run='python main.py --save "$TRAINFLEET_OUTPUT_DIR/model.pt"').job
    assert job.script is None and job.workdir == "word_language_model" and job.run.startswith("python main.py")
    with pytest.raises(TrainfleetInputError, match="not both"):
        _config(**GOOD, run="python main.py")
    with pytest.raises(TrainfleetInputError, match="workdir"):
        _config(**GOOD, workdir="../outside")


def test_job_from_context_gets_stable_id():
    assert _config(**GOOD).job.job_id == _config(**GOOD).job.job_id
    assert _config(**GOOD, job_id="my-job").job.job_id == "my-job"


@pytest.mark.parametrize(
    "override, message",
    [
        ({"instance_type": "p9.mega"}, "unknown instance type"),
        ({"repo": "file:///etc"}, "must be an https:// URL"),
        ({"repo": "git@github.com:a/b.git"}, "instances have no ssh key"),
        ({"repo": "https://x.com/a;rm -rf /"}, "not allowed"),
        ({"ref": "--upload-pack=evil"}, "git ref"),
        ({"script": "../../etc/passwd.py"}, "escapes the repository"),
        ({"script": "/abs/train.py"}, "relative"),
        ({"script": "."}, "names no file"),
        ({"script_args": "--lr=$(reboot)"}, "not allowed"),
        ({"max_runtime_minutes": "-5"}, "positive"),
        ({"spot": "maybe"}, "true or false"),
        ({"job_id": "Bad_ID"}, "job_id"),
    ],
)
def test_bad_context_is_rejected_with_one_line(override, message):
    with pytest.raises(TrainfleetInputError, match=message) as info:
        _config(**{**GOOD, **override})
    assert "\n" not in str(info.value)


def test_partial_job_context_names_what_is_missing():
    with pytest.raises(TrainfleetInputError, match="-c ref=... -c script=..."):
        _config(instance_type="c5.xlarge", repo=GOOD["repo"])


def test_bad_app_settings_rejected():
    with pytest.raises(TrainfleetInputError, match="max_azs"):
        _config(max_azs="3")
    with pytest.raises(TrainfleetInputError, match="ami_parameter"):
        _config(ami_parameter="ami-123")
    with pytest.raises(TrainfleetInputError, match="cpu_ami_parameter"):
        _config(cpu_ami_parameter="ami-123")
    with pytest.raises(TrainfleetInputError, match="cpu_root_volume_gib"):
        _config(cpu_root_volume_gib="0")
    with pytest.raises(TrainfleetInputError, match="root_volume_gib"):
        _config(root_volume_gib="big")
    with pytest.raises(TrainfleetInputError, match="root_device_name .* from the catalog"):
        _config(root_device_name="/dev/xvda")


def test_images_default_to_the_catalog():
    images, catalog = _config().images, load_catalog().images
    assert set(images) == set(catalog) == {"gpu", "cpu"}
    for kind, image in images.items():
        assert image.ami_parameter == catalog[kind].ssm_parameter
        assert image.root_volume_gib == catalog[kind].root_volume_gib
        assert image.root_device_name == catalog[kind].root_device_name
        assert image.python == catalog[kind].python
    assert images["cpu"].root_volume_gib == 30 and images["gpu"].root_volume_gib == 100


def test_image_settings_overridable_by_context():
    images = _config(ami_parameter="/my/gpu", root_volume_gib="200", cpu_ami_parameter="/my/cpu",
                     cpu_root_volume_gib=40).images
    assert (images["gpu"].ami_parameter, images["gpu"].root_volume_gib) == ("/my/gpu", 200)
    assert (images["cpu"].ami_parameter, images["cpu"].root_volume_gib) == ("/my/cpu", 40)


@pytest.mark.parametrize("instance_type", ["p3.2xlarge", "t3.micro"])
def test_types_the_catalog_refuses_are_refused_with_its_reason(instance_type):
    reason = load_catalog().get(instance_type).refused
    assert reason
    with pytest.raises(TrainfleetInputError) as info:
        _config(**{**GOOD, "instance_type": instance_type})
    assert reason in str(info.value) and instance_type in str(info.value) and "\n" not in str(info.value)


def test_job_knows_its_image_and_credit_mode():
    assert _config(**{**GOOD, "instance_type": "g5.xlarge"}).job.instance_spec.image == "gpu"
    t3 = _config(**{**GOOD, "instance_type": "t3.medium", "spot": "false"}).job
    assert t3.instance_spec.image == "cpu" and t3.instance_spec.burstable and t3.market == "on-demand"


def test_private_subnets_is_a_context_option_off_by_default():
    import json
    from pathlib import Path

    assert _config().private_subnets is False
    assert json.loads((Path(__file__).resolve().parents[2] / "cdk.json").read_text())["context"]["private_subnets"] is False
    assert _config(private_subnets="true").private_subnets is True and _config(private_subnets=True).private_subnets
    with pytest.raises(TrainfleetInputError, match="context private_subnets='nat' must be true or false"):
        _config(private_subnets="nat")
