import pytest

from instance_benchmarks.catalog import load_catalog
from instance_benchmarks.core.errors import TrainfleetInputError


def test_catalog_is_dated_and_covers_required_families():
    catalog = load_catalog()
    assert catalog.as_of
    families = {spec.family for spec in catalog.instances.values()}
    assert {"t2", "t3", "c5", "m5", "p3", "g4dn", "g5"} <= families
    p3 = catalog.get("p3.2xlarge")
    assert (p3.gpu_model, p3.gpu_count, p3.gpu_memory_gib) == ("V100", 1, 16)
    assert p3.on_demand_price("us-east-1") > catalog.get("c5.xlarge").on_demand_price("us-east-1")


def test_every_entry_is_complete_and_positive():
    for spec in load_catalog().instances.values():
        assert spec.vcpus > 0 and spec.memory_gib > 0 and spec.peak_fp32_tflops > 0
        assert spec.peak_fp16_tflops >= spec.peak_fp32_tflops
        assert spec.is_gpu == (spec.gpu_count > 0) == (spec.gpu_model is not None)
        assert spec.on_demand_usd_per_hour and all(p > 0 for p in spec.on_demand_usd_per_hour.values())


def test_unknown_type_suggests_close_names():
    with pytest.raises(TrainfleetInputError, match=r"unknown instance type 'c5.xlarg'.*did you mean c5.xlarge"):
        load_catalog().get("c5.xlarg")


def test_unknown_region():
    with pytest.raises(TrainfleetInputError, match="unknown region 'mars-1'"):
        load_catalog().require_region("mars-1")
    with pytest.raises(TrainfleetInputError, match="no on-demand price"):
        load_catalog().get("c5.xlarge").on_demand_price("eu-west-3")


def test_every_family_boots_a_known_image_or_is_refused_with_a_reason():
    catalog = load_catalog()
    for spec in catalog.instances.values():
        assert (spec.image in catalog.images) != bool(spec.refused), spec.name
    assert catalog.image_for("g5.xlarge").kind == "gpu" and catalog.image_for("c5.xlarge").root_volume_gib == 30
    assert "oss-nvidia-driver-gpu-pytorch" in catalog.images["gpu"].ssm_parameter
    assert catalog.get("t3.medium").burstable and not catalog.get("c5.xlarge").burstable


def test_the_catalog_file_is_written_as_the_updater_writes_it():
    import json

    from instance_benchmarks.catalog import CATALOG_PATH
    from instance_benchmarks.catalog.update import dump_catalog

    text = CATALOG_PATH.read_text()
    assert dump_catalog(json.loads(text)) == text


def test_a_type_whose_family_has_no_image_is_refused_naming_the_gap():
    from instance_benchmarks.catalog import parse_catalog

    data = {"as_of": "2026-11-23", "images": {}, "families": {}, "instances": {"z1d.large": {
        "vcpus": 2, "memory_gib": 16, "gpu_model": None, "gpu_count": 0, "gpu_memory_gib": 0,
        "peak_fp32_tflops": 0.1, "peak_fp16_tflops": 0.1, "on_demand_usd_per_hour": {"us-east-1": 0.186},
        "on_demand_as_of": "2026-11-23"}}}
    catalog = parse_catalog(data)
    with pytest.raises(TrainfleetInputError, match="z1d.large cannot run trainfleet on EC2: its family has no machine image"):
        catalog.image_for("z1d.large")


def test_gpu_peaks_come_from_the_per_model_table_times_the_gpu_count():
    catalog = load_catalog()
    for spec in catalog.instances.values():
        if spec.is_gpu:
            assert spec.gpu_peaks, f"{spec.gpu_model} has no row in gpu_peaks"
            assert spec.peak_tflops("fp32") == pytest.approx(spec.peak_fp32_tflops)  # the instance line agrees
            assert spec.peak_tflops("fp16") == pytest.approx(spec.peak_fp16_tflops)
    assert catalog.get("p5.48xlarge").peak_tflops("tf32") == pytest.approx(8 * 494.5)
    assert catalog.get("g4dn.xlarge").peak_tflops("tf32") is None  # Turing: no TF32, never the fp32 figure
    assert catalog.get("c5.xlarge").peak_tflops("tf32") is None
