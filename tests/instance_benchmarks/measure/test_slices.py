"""Predicting a full training job from a benchmarked slice: synthetic step logs with known answers."""
from __future__ import annotations

import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from instance_benchmarks.measure.slices import SliceEstimate, estimate_slice


def step_log(seconds_per_step: list[float], *, first_step: int = 1, start_t: float = 0.0, every: int = 1,
             batch_size: int | None = None) -> list[dict]:
    """Records a script logging every `every` steps, step i (from first_step) having taken seconds_per_step[i]."""
    records, t = [], start_t
    for i, seconds in enumerate(seconds_per_step):
        step, t = first_step + i, t + seconds
        if (i + 1) % every == 0:
            record = {"step": step, "loss": 1.0 / step, "t": round(t, 6)}
            if batch_size:
                record["samples"] = step * batch_size
            records.append(record)
    return records


COMPILING = [5.0] * 10 + [0.5] * 190  # 10 slow steps (compilation), then exactly 0.5 s/step up to step 200


@pytest.mark.parametrize("warmup", [
    {"warmup_steps": 10}, {"warmup_seconds": 50.0}, {"warmup_steps": 10, "warmup_seconds": 20}])
def test_steady_rate_after_warmup_and_the_full_job_pays_warmup_once(warmup):
    est = estimate_slice(step_log(COMPILING), total_steps=10_000, **warmup)
    assert est.unit == "step"
    assert (est.sec_per_unit, est.sec_per_unit_low, est.sec_per_unit_high) == pytest.approx((0.5, 0.5, 0.5))
    assert est.cv == pytest.approx(0.0, abs=1e-9)
    assert (est.measured_units, est.measured_seconds) == pytest.approx((189, 94.5))  # steps 11 -> 200
    assert est.total_units == 10_000 and est.remaining_units == 9_800
    assert est.est_train_seconds == pytest.approx(10 * 5.0 + 9_990 * 0.5)  # exactly what the full job takes
    assert est.est_train_seconds == pytest.approx(10_000 * 0.5 + 50, rel=1e-3)
    assert est.est_train_seconds_low == est.est_train_seconds_high == pytest.approx(est.est_train_seconds)


def test_without_warmup_given_the_first_interval_is_dropped():
    # "step 0" at start-up, then logged every 10 steps: steps 1-10 take 11 s (compilation), then 0.5 s/step
    records = [{"step": 0, "t": 1.0}, *step_log([1.1] * 10 + [0.5] * 90, start_t=1.0, every=10)]
    est = estimate_slice(records, total_steps=1_000)
    assert est.sec_per_unit == pytest.approx(0.5) and est.measured_units == 90
    assert est.est_train_seconds == pytest.approx(12 + 990 * 0.5)


def test_warmup_left_in_the_measurement_when_not_excluded():
    est = estimate_slice(step_log(COMPILING), total_steps=10_000)  # only the first interval (steps 1->2) dropped
    assert est.sec_per_unit == pytest.approx((8 * 5.0 + 190 * 0.5) / 198)
    assert est.sec_per_unit_high > 0.5 == pytest.approx(est.sec_per_unit_low)


def test_noisy_log_central_rate_within_two_percent_of_the_true_mean():
    rng = random.Random(0)
    per_step = [3.0] * 20 + [0.2 * rng.uniform(0.6, 1.4) for _ in range(2_000)]  # true mean 0.2 s/step
    per_step[500:510] = [2.0] * 10  # a stall (checkpoint save) inside the slice
    true_rate = 0.2 + 10 * (2.0 - 0.2) / 2_000
    est = estimate_slice(step_log(per_step, every=5), total_steps=50_000, warmup_steps=20)
    assert est.sec_per_unit == pytest.approx(true_rate, rel=0.02)
    assert est.sec_per_unit_low < est.sec_per_unit < est.sec_per_unit_high
    assert est.sec_per_unit_low < 0.2 < est.sec_per_unit_high
    assert 0 < est.cv < 1
    assert est.est_train_seconds == pytest.approx(20 * 3.0 + 49_980 * true_rate, rel=0.02)
    assert est.est_train_seconds_low < est.est_train_seconds < est.est_train_seconds_high


def test_resumed_run_where_t_restarts_and_warmup_is_paid_again():
    run1 = step_log([5.0] * 10 + [0.5] * 90)  # interrupted after step 100, last checkpoint at step 80
    run2 = step_log([5.0] * 10 + [0.5] * 110, first_step=81)  # t restarts; recompiles for 10 steps
    records = [*run1, {"event": "resumed", "t": 0.1}, *run2]
    est = estimate_slice(records, total_steps=1_000, warmup_seconds=50)  # t <= 50 is warm-up in each run
    assert est.sec_per_unit == est.sec_per_unit_high == pytest.approx(0.5)
    assert est.measured_units == 89 + 109
    assert est.remaining_units == 800
    assert est.est_train_seconds == pytest.approx(50 + 990 * 0.5)


def test_no_interval_spans_a_resume():
    run1 = step_log([0.5] * 100)
    run2 = step_log([0.5] * 100, first_step=101, start_t=run1[-1]["t"] + 300)  # 300 s lost to the interruption
    records = [*run1, {"event": "resumed", "t": run1[-1]["t"] + 299}, *run2]
    assert estimate_slice(records, total_steps=1_000).sec_per_unit == pytest.approx(0.5)
    without_marker = estimate_slice(run1 + run2, total_steps=1_000)
    assert without_marker.sec_per_unit > 1  # the gap is only excluded because of the marker


def test_clock_or_counter_going_backwards_starts_a_new_chain():
    run1 = step_log([0.5] * 50)
    assert estimate_slice(run1 + step_log([0.5] * 50), total_steps=500).measured_units == 48 + 49  # t restarts
    rewound = step_log([0.5] * 50, first_step=31, start_t=run1[-1]["t"] + 20)  # counter back to a checkpoint
    assert estimate_slice(run1 + rewound, total_steps=500).sec_per_unit == pytest.approx(0.5)


def test_repeated_counter_and_evaluation_time_count_toward_the_next_interval():
    records, t = [], 0.0
    for step in range(10, 1_010, 10):
        t += 5.0
        records.append({"step": step, "loss": 0.5, "t": t})
        if step % 100 == 0:  # 10 s of validation, logged with the same step
            t += 10.0
            records.append({"step": step, "val_accuracy": 0.9, "t": t})
    est = estimate_slice(records, total_steps=10_000)
    # steps 20 -> 1000 (10 -> 20 is warm-up): 98 logging intervals of 5 s and 9 validations of 10 s
    assert est.sec_per_unit == pytest.approx((98 * 5.0 + 9 * 10.0) / 980)


def test_records_lacking_the_counter_or_t_are_ignored():
    base = step_log(COMPILING)
    noisy = []
    for record in base:
        noisy += [record, {"val_accuracy": 0.8, "t": record["t"]}, {"event": "checkpoint_saved", "t": record["t"]},
                  {"step": record["step"] + 5}, {"step": True, "t": 1.0}, {"step": float("nan"), "t": 2.0}]
    expected = estimate_slice(base, total_steps=10_000, warmup_steps=10)
    assert estimate_slice(noisy, total_steps=10_000, warmup_steps=10) == expected


def test_counter_jumps_from_missing_log_lines():
    records = [r for r in step_log(COMPILING) if r["step"] % 7 and r["step"] % 11]
    est = estimate_slice(records, total_steps=10_000, warmup_steps=10)
    assert est.sec_per_unit == pytest.approx(0.5) and est.sec_per_unit_low == pytest.approx(0.5)


def test_sample_based_totals():
    records = step_log(COMPILING, batch_size=256)
    est = estimate_slice(records, total_samples=2_560_000, warmup_steps=10)
    assert est.unit == "samples"
    assert est.sec_per_unit == pytest.approx(0.5 / 256)
    assert est.measured_units == 189 * 256 and est.remaining_units == 2_560_000 - 200 * 256
    assert est.est_train_seconds == pytest.approx(10 * 5.0 + 9_990 * 0.5)


def test_samples_without_steps_fall_back_to_warmup_seconds():
    records = [{"samples": r["samples"], "t": r["t"]} for r in step_log(COMPILING, batch_size=32)]
    by_seconds = estimate_slice(records, total_samples=320_000, warmup_steps=10, warmup_seconds=50)
    assert by_seconds.sec_per_unit == pytest.approx(0.5 / 32)
    assert by_seconds == estimate_slice(records, total_samples=320_000, warmup_seconds=50)
    default = estimate_slice(records, total_samples=320_000, warmup_steps=10)  # nothing applies: first interval dropped
    assert default == estimate_slice(records, total_samples=320_000)


@pytest.mark.parametrize(("records", "kwargs"), [
    ([], {}),
    ([{"step": 1, "t": 1.0}], {}),
    ([{"step": 1, "t": 1.0}, {"step": 2, "t": 2.0}], {}),  # the only interval is warm-up
    (step_log(COMPILING), {"warmup_steps": 200}),
    (step_log(COMPILING), {"warmup_seconds": 1e6}),
    ([{"loss": 1.0, "t": float(t)} for t in range(100)], {}),
    ([{"step": 5, "t": float(t)} for t in range(100)], {}),  # no progress
])
def test_too_short_or_unusable_logs_give_none(records, kwargs):
    assert estimate_slice(records, total_steps=1_000, **kwargs) is None


def test_one_and_two_intervals():
    one = estimate_slice([{"step": 10, "t": 4.0}, {"step": 20, "t": 9.0}], total_steps=100, warmup_seconds=1)
    assert (one.sec_per_unit, one.sec_per_unit_low, one.sec_per_unit_high, one.cv) == (0.5, 0.5, 0.5, None)
    assert one.est_train_seconds == pytest.approx(4.0 + 90 * 0.5) and one.remaining_units == 80
    two = estimate_slice([{"step": 10, "t": 4.0}, {"step": 20, "t": 9.0}, {"step": 30, "t": 16.0}],
                         total_steps=100, warmup_seconds=1)
    assert two.sec_per_unit_low == two.sec_per_unit == two.sec_per_unit_high == pytest.approx(0.6)
    assert two.cv == pytest.approx(statistics.stdev([0.5, 0.7]) / 0.6)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "exactly one of total_steps or total_samples"),
    ({"total_steps": 10, "total_samples": 100}, "exactly one of total_steps or total_samples"),
    ({"total_steps": 0}, "total_steps must be a positive number"),
    ({"total_samples": float("nan")}, "total_samples must be a positive number"),
    ({"total_steps": 10, "warmup_steps": -1}, "must be >= 0"),
    ({"total_steps": 10, "warmup_seconds": -0.5}, "must be >= 0"),
])
def test_bad_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        estimate_slice(step_log(COMPILING), **kwargs)


def test_cost_scales_with_price_and_adds_overhead():
    est = estimate_slice(step_log(COMPILING), total_steps=10_000, warmup_steps=10)
    central, low, high = est.cost(3.6)
    assert central == pytest.approx(est.est_train_seconds / 1000) and low <= central <= high
    assert est.cost(7.2) == pytest.approx(tuple(2 * x for x in est.cost(3.6)))
    assert est.cost(3.6, overhead_seconds=600) == pytest.approx(tuple(x + 0.6 for x in est.cost(3.6)))
    assert est.cost(0.0, overhead_seconds=600) == (0.0, 0.0, 0.0)


@settings(derandomize=True, max_examples=200)
@given(st.lists(st.tuples(st.floats(0.001, 100), st.integers(1, 1000)), min_size=2, max_size=60),
       st.floats(1, 1e7))
def test_estimate_is_consistent_for_any_log(intervals, total):
    records, t, step = [{"step": 0, "t": 0.0}], 0.0, 0
    for dt, dsteps in intervals:
        t, step = t + dt, step + dsteps
        records.append({"step": step, "t": t})
    est = estimate_slice(records, total_steps=total)
    assert isinstance(est, SliceEstimate)
    assert est.sec_per_unit == pytest.approx(est.measured_seconds / est.measured_units)
    assert est.sec_per_unit_low <= est.sec_per_unit <= est.sec_per_unit_high
    assert est.est_train_seconds_low <= est.est_train_seconds <= est.est_train_seconds_high
    assert est.remaining_units == max(total - step, 0)
    assert est.cost(1.0, 10)[0] == pytest.approx((est.est_train_seconds + 10) / 3600)
