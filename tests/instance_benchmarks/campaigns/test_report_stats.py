"""Configurations, their spread over repeats, cost honesty and the recommendation (no S3, no charts)."""
import pytest

from instance_benchmarks.campaigns.bench_report import synthetic_campaign
from instance_benchmarks.campaigns.report import assemble_report, config_id, cost_breakdown, repeat_of
from instance_benchmarks.campaigns.report_stats import recommendation_lines, within_noise
from instance_benchmarks.measure.harness import spread

TARGET = {"metric": "val_accuracy", "value": 0.9}


def _record(run_id, itype, batch, *, rate, tta, price=0.1, on_demand=0.2, final=0.95, attempts=None):
    """A complete run's records as store.load_run_records returns them."""
    quote = {"usd_per_hour": price, "on_demand_usd_per_hour": on_demand, "storage_usd_per_hour": 0.0036,
             "source": "describe_spot_price_history (us-east-1a)", "quoted_at": "2025-06-01T00:00:00+00:00"}
    result = {"run_id": run_id, "instance_type": itype, "market": "spot", "price": quote, "samples_per_s": rate,
              "usd_per_1m_samples": price / 3600 * 1e6 / rate, "time_to_accuracy_s": tta,
              "cost_to_accuracy_usd": tta * price / 3600 if tta else None, "final_metric": final if tta else 0.5,
              "primary_metric": "val_accuracy", "train_seconds": 100.0, "cost_usd": 0.01, "billable_seconds": 160,
              "boot_seconds": 20.0, "setup_seconds": 30.0, "attempts": len(attempts or [1])}
    launch = {"hyperparameters": {"epochs": 5, "batch_size": batch}, "instance_type": itype,
              "attempts": attempts or [{"attempt": 1, "outcome": "completed", "billed_seconds": 160, "script_seconds": 100.0,
                                        "cost_usd": 0.01, "price": quote}]}
    return {"run_id": run_id, "launch": launch, "result": result}


def _report(records, target=TARGET):
    spec = {"matrix": {"instance_type": ["c5.xlarge", "m5.large"], "batch_size": [32, 64]}, "target": target}
    return assemble_report("sweep", records, {"backends": {"ec2": {"spec": spec}}}, {})


def test_spread_is_the_median_and_the_sample_coefficient_of_variation():
    assert spread([10.0, 12.0, 14.0]) == (12.0, pytest.approx(2.0 / 12.0))
    assert spread([5.0]) == (5.0, None) and spread([None, "x"]) == (None, None)


def test_run_ids_map_to_their_configuration_and_repeat():
    assert (config_id("c5-xlarge-bs32-1a2b3c4d-r2"), repeat_of("c5-xlarge-bs32-1a2b3c4d-r2")) == ("c5-xlarge-bs32-1a2b3c4d", 2)
    assert (config_id("sm-g5-xlarge-0f0f0f0f"), repeat_of("sm-g5-xlarge-0f0f0f0f")) == ("sm-g5-xlarge-0f0f0f0f", 1)


def test_repeats_are_summarised_per_configuration_and_noisy_figures_marked():
    records = [_record("c5-a", "c5.xlarge", 32, rate=1000.0, tta=100.0), _record("c5-a-r2", "c5.xlarge", 32, rate=1200.0, tta=90.0),
               _record("m5-b", "m5.large", 32, rate=800.0, tta=120.0), _record("m5-b-r2", "m5.large", 32, rate=804.0, tta=121.0)]
    report = _report(records)
    noisy, steady = report.configs
    assert (noisy["runs"], noisy["samples_per_s"]) == (2, 1100.0) and noisy["samples_per_s_cv"] > 0.05
    assert steady["samples_per_s_cv"] < 0.01 and steady["samples_per_s_range"] == (800.0, 804.0)
    from instance_benchmarks.campaigns.report_stats import config_cells

    assert config_cells(noisy)["samples_per_s"].endswith("!)") and "!" not in config_cells(steady)["samples_per_s"]


def test_the_recommendation_names_the_cheapest_and_fastest_that_reached_the_target():
    records = [_record("c5-a", "c5.xlarge", 32, rate=1000.0, tta=200.0, price=0.1),   # $0.0056 to target
               _record("m5-b", "m5.large", 32, rate=900.0, tta=100.0, price=0.4),     # $0.0111, fastest
               _record("m5-c", "m5.large", 64, rate=5000.0, tta=None, price=0.01)]    # cheapest per sample, missed
    report = _report(records)
    rec = report.recommendation
    assert rec["cheapest"]["config"]["config_id"] == "c5-a" and rec["fastest"]["config"]["config_id"] == "m5-b"
    assert rec["best_throughput_cost"]["config"]["config_id"] == "c5-a"  # among those that reached the target
    lines = recommendation_lines(report)
    assert lines[0] == "sweep: c5.xlarge batch_size=32 is the cheapest to reach val_accuracy >= 0.9"
    assert lines[1].startswith("cheapest: c5.xlarge batch_size=32: $0.0056 to target, in 200.0 s (1 run)")
    assert any(line.startswith("fastest: m5.large batch_size=32: 100.0 s to target") for line in lines)
    assert "spot vs on-demand: $0.1000/h spot against $0.2000/h on demand: 50% saved, $0.0056 less to target" in lines
    assert lines[-1] == "missed the target (not recommended): m5.large batch_size=64 (final 0.5000)"
    assert not any("m5.large batch_size=64" in line for line in lines[:-1])


def test_two_choices_within_noise_are_said_to_be():
    records = [_record("c5-a", "c5.xlarge", 32, rate=1000.0, tta=100.0), _record("c5-a-r2", "c5.xlarge", 32, rate=1000.0, tta=110.0),
               _record("m5-b", "m5.large", 32, rate=1000.0, tta=103.0), _record("m5-b-r2", "m5.large", 32, rate=1000.0, tta=112.0)]
    report = _report(records)
    assert report.recommendation["fastest"]["within_noise"]
    assert any(line.startswith("  within noise: m5.large batch_size=32 differs by 2.4%") for line in recommendation_lines(report))
    apart = _report([_record("c5-a", "c5.xlarge", 32, rate=1e3, tta=100.0), _record("c5-a-r2", "c5.xlarge", 32, rate=1e3, tta=101.0),
                     _record("m5-b", "m5.large", 32, rate=1e3, tta=150.0), _record("m5-b-r2", "m5.large", 32, rate=1e3, tta=151.0)])
    assert not apart.recommendation["fastest"]["within_noise"]
    single = {"t": 100.0, "t_cv": None}
    assert within_noise(single, {"t": 103.0, "t_cv": None}, "t")[0] and not within_noise(single, {"t": 110.0}, "t")[0]


def test_failed_runs_are_listed_apart_and_nothing_is_recommended_when_none_reached():
    failed = {"run_id": "m5-z", "launch": {"hyperparameters": {"batch_size": 64}, "instance_type": "m5.large",
                                           "attempts": [{"outcome": "failed", "cost_usd": 0.002}]}, "result": None}
    report = _report([_record("c5-a", "c5.xlarge", 32, rate=1000.0, tta=None), failed])
    assert report.recommendation["cheapest"] is None
    lines = recommendation_lines(report)
    assert lines[0] == "sweep: no configuration reached val_accuracy >= 0.9"
    assert lines[-1] == "failed or incomplete (not recommended): m5.large batch_size=64 (1 run(s))"
    assert report.incomplete[0]["cost_usd"] == 0.002


def test_without_a_target_the_cheapest_complete_run_is_named():
    report = _report([_record("c5-a", "c5.xlarge", 32, rate=1000.0, tta=None, price=0.1),
                      _record("m5-b", "m5.large", 32, rate=1000.0, tta=None, price=0.4)], target=None)
    assert [r["status"] for r in report.rows] == ["complete", "complete"]
    # both runs cost $0.01 (the fixture's): named, and said to be a tie
    assert report.recommendation["headline"] == ("c5.xlarge batch_size=32 is the cheapest run, within noise of m5.large "
                                                 "batch_size=32 (cannot rank them: run more repeats)")


def test_cost_breakdown_bills_boot_setup_training_idle_ebs_and_interrupted_attempts():
    quote = {"usd_per_hour": 0.1, "storage_usd_per_hour": 0.0036}
    attempts = [{"outcome": "interrupted", "billed_seconds": 100, "script_seconds": 40.0, "cost_usd": 0.0028, "price": quote},
                {"outcome": "completed", "billed_seconds": 300, "script_seconds": 200.0, "cost_usd": 0.0083, "price": quote}]
    result = {"billable_seconds": 400, "boot_seconds": 30.0, "setup_seconds": 60.0, "train_seconds": 240.0, "price": quote}
    costs = cost_breakdown(result, {"attempts": attempts})
    assert costs["idle_seconds"] == pytest.approx(400 - 30 - 60 - 240)
    assert costs["ebs_usd"] == pytest.approx(400 * 0.0036 / 3600)
    assert costs["interrupted_usd"] == pytest.approx(0.0028) and costs["interrupted_attempts"] == 1


def test_the_synthetic_campaign_of_the_benchmark_reports():
    records, document, histories = synthetic_campaign(60, repeats=3)
    report = assemble_report("synthetic", records, document, histories)
    assert len(report.rows) == 60 and len(report.configs) == 20 and all(c["runs"] == 3 for c in report.configs)
    assert report.recommendation["cheapest"]["config"]["status"] == "reached"
    assert not any(c["on_front"] for c in report.configs if c["status"] == "missed")


def test_benchmark_slices_are_ranked_by_their_prediction_not_the_target():
    records = [_record("c5-a", "c5.xlarge", 32, rate=1000.0, tta=None), _record("m5-b", "m5.large", 32, rate=1000.0, tta=None)]
    for record, usd in zip(records, (2.0, 1.5)):
        record["result"]["prediction"] = {"measured_units": 100, "sec_per_unit": 0.1, "usd_per_unit": 1e-5,
                                          "est_seconds": 3600 * usd, "est_usd": usd, "est_usd_low": usd * 0.9,
                                          "est_usd_high": usd * 1.1, "est_on_demand_usd": usd * 2}
    report = _report(records)
    assert [r["status"] for r in report.rows] == ["slice", "slice"] and not report.recommendation["missed"]
    assert report.recommendation["headline"] == "m5.large batch_size=32 is the cheapest predicted for the whole job"
    assert recommendation_lines(report)[1] == "cheapest: m5.large batch_size=32: $1.5000 predicted for the whole job, 1.5000 h (1 run)"


def _slices(*configs):
    """Slice runs: (run id, instance type, predicted $, CV of the slice's step times)."""
    records = []
    for run_id, itype, usd, cv in configs:
        record = _record(run_id, itype, 32, rate=1000.0, tta=None)
        record["result"]["step_time_cv"] = cv
        record["result"]["prediction"] = {"measured_units": 100, "sec_per_unit": 0.1, "usd_per_unit": 1e-5, "cv": cv,
                                          "est_seconds": 3600 * usd, "est_usd": usd, "est_usd_low": usd * 0.9,
                                          "est_usd_high": usd * 1.1, "est_on_demand_usd": usd * 2}
        records.append(record)
    return _report(records)


def _cheapest_lines(report):
    """The recommendation's lines about the cheapest choice (up to the fastest's)."""
    lines = recommendation_lines(report)
    return lines[1:next(i for i, line in enumerate(lines) if line.startswith("fastest"))]


def test_slices_that_differ_less_than_their_spread_are_within_noise_and_not_ranked():
    report = _slices(("c5-a", "c5.xlarge", 1.00, 0.12), ("m5-b", "m5.large", 1.08, 0.10))  # 8 % apart, CV 10-12 %
    cheapest = report.recommendation["cheapest"]
    assert cheapest["within_noise"] and cheapest["cannot_rank"]
    assert report.recommendation["headline"] == ("c5.xlarge batch_size=32 is the cheapest predicted for the whole job, "
                                                 "within noise of m5.large batch_size=32 (cannot rank them: run more "
                                                 "repeats)")
    lines = recommendation_lines(report)
    assert lines[1] == ("cheapest: c5.xlarge batch_size=32: $1.0000 predicted for the whole job, 1.0000 h "
                        "(1 run, step-time CV 12.0% (noisy))")
    assert lines[2] == ("  within noise: m5.large batch_size=32 differs by 8.0%, less than the spread (step-time CV "
                        "12.0% within the run): cannot rank them; `repeats: 3` would tell them apart")
    assert report.configs[0]["step_time_cv"] == 0.12 and report.rows[0]["pred_cv"] == 0.12


def test_slices_whose_ranges_overlap_are_within_noise_but_ranked_when_the_gap_exceeds_the_spread():
    report = _slices(("c5-a", "c5.xlarge", 1.00, 0.05), ("m5-b", "m5.large", 1.08, 0.04), ("m6-c", "m6i.large", 1.5, 0.04))
    cheapest = report.recommendation["cheapest"]
    assert cheapest["within_noise"] and not cheapest["cannot_rank"]  # [0.95, 1.05] and [1.037, 1.123] overlap
    assert report.recommendation["headline"].endswith("within noise of m5.large batch_size=32")
    assert recommendation_lines(report)[2] == (
        "  within noise: m5.large batch_size=32 differs by 8.0%; their ranges (median +- spread: step-time CV 5.0% "
        "within the run; step-time CV 4.0% within the run) overlap: either will do")
    apart = _slices(("c5-a", "c5.xlarge", 1.00, 0.02), ("m5-b", "m5.large", 1.08, 0.02))
    assert not apart.recommendation["cheapest"]["within_noise"]
    assert not any("within noise" in line for line in _cheapest_lines(apart))


def test_every_choice_within_noise_of_the_winner_is_named():
    report = _slices(("c5-a", "c5.xlarge", 1.00, 0.10), ("m5-b", "m5.large", 1.02, 0.10), ("m6-c", "m6i.large", 1.05, 0.1),
                     ("r5-d", "r5.large", 2.0, 0.01))
    lines = _cheapest_lines(report)
    assert "  also within noise: m6i.large batch_size=32 (5.0% apart)" in lines
    assert not any("r5.large" in line for line in lines)


def test_repeats_and_step_times_both_count_in_the_spread():
    records = [_record("c5-a", "c5.xlarge", 32, rate=1000.0, tta=100.0), _record("c5-a-r2", "c5.xlarge", 32, rate=1000.0, tta=101.0),
               _record("m5-b", "m5.large", 32, rate=1000.0, tta=110.0), _record("m5-b-r2", "m5.large", 32, rate=1000.0, tta=111.0)]
    assert not _report(records).recommendation["fastest"]["within_noise"]  # repeats agree to 1 %: 10 % apart is real
    for record in records:
        record["result"]["step_time_cv"] = 0.2  # but each run's step times spread by 20 %
    fastest = _report(records).recommendation["fastest"]
    assert fastest["within_noise"] and fastest["cannot_rank"]
    assert "less than the spread (step-time CV 20.0% within the runs): cannot rank them; more repeats would" in \
        "\n".join(recommendation_lines(_report(records)))


def test_runs_measured_while_other_processes_competed_for_the_cpus_are_flagged():
    records = [_record("c5-a", "c5.xlarge", 32, rate=1000.0, tta=100.0), _record("m5-b", "m5.large", 32, rate=900.0, tta=150.0)]
    records[1]["launch"]["attempts"][0]["host_load"] = {"cpus": 2, "seconds": 150.0, "busy_cpus": 2.0, "run_cpus": 0.7,
                                                        "other_cpus": 1.3, "load_avg_1m": 3.1}
    report = _report(records)
    assert [r["host_other_cpus"] for r in report.rows] == [None, 1.3]
    assert recommendation_lines(report)[-1] == (
        "host load: other processes competed for this machine's CPUs during 1 of 2 run(s) (up to 1.3 CPUs on average: "
        "m5-b): their figures are slower and noisier than on an idle machine")
    records[1]["launch"]["attempts"][0]["host_load"]["other_cpus"] = 0.05  # background noise: no warning
    assert not any(line.startswith("host load") for line in recommendation_lines(_report(records)))


def test_each_runs_step_time_spread_is_in_every_report_format():
    from instance_benchmarks.campaigns.report import to_csv, to_markdown
    from instance_benchmarks.campaigns.report_html import to_html
    from instance_benchmarks.campaigns.report_stats import terminal_run_cells

    records = [_record("c5-a", "c5.xlarge", 32, rate=1000.0, tta=100.0), _record("m5-b", "m5.large", 32, rate=900.0, tta=150.0)]
    records[0]["result"]["step_time_cv"] = 0.0712
    report = _report(records)
    assert "step_time_cv" in to_csv(report).decode().splitlines()[0] and ",0.0712," in to_csv(report).decode()
    assert "step time CV" in to_markdown(report) and "| 0.0712 |" in to_markdown(report)
    assert "step time CV" in to_html(report, {}) and "0.0712" in to_html(report, {})
    assert terminal_run_cells(report.rows[0])["samples_per_s_text"] == "1,000.0 (7%!)"
    assert terminal_run_cells(report.rows[1])["samples_per_s_text"] == "900.0"
