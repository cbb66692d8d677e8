"""Configurations, their spread over repeats, and the recommendation a report opens with.

A configuration is an instance type with one set of hyperparameters; `repeats: N` runs it N times
(run ids `<config>`, `<config>-r2`, ...). Its figures are the median over its complete runs, with the
coefficient of variation (sample standard deviation / mean) as the spread; a figure whose CV exceeds
`NOISY_CV` (5 %) is marked.

The recommendation considers only configurations whose every complete run reached the campaign's
target: the cheapest (median cost to target), the fastest (median time to target), the best $/1M
samples, and what spot saved against the on-demand price. Each figure carries its spread (`noise`): the
larger of the CV between repeats and, for the figures step times drive (throughput, time, cost, a slice's
prediction), the CV of the step times within the runs (`step_time_cv`, a slice's `pred_cv`; median over
the runs). Two choices are "within noise" when their intervals, median x (1 +- spread), overlap; when the
spread is larger than their difference the report cannot rank them and says so, suggesting `repeats`
(with no spread at all, single runs that logged under two intervals, a gap under 5 % is treated so).
Runs that missed the target, never printed it
(`no metric`) or failed are listed apart.
"""
from __future__ import annotations

import statistics

from instance_benchmarks.campaigns.report_format import format_value, metric_columns, pareto_front
from instance_benchmarks.measure.harness import spread

NOISY_CV = 0.05
# other processes using this many CPUs on average while a run ran competed with it (embedded default: host_load)
COMPETING_CPUS = 0.25
# Figures summarised per configuration (median and CV over its complete runs).
FIGURES = ("samples_per_s", "time_to_accuracy_s", "cost_to_accuracy_usd", "usd_per_1m_samples", "final_metric",
           "train_seconds", "cost_usd", "sec_per_step", "est_usd", "est_hours")
# figures that step times drive: their spread includes the run's own step-time CV
TIMED = {"samples_per_s", "time_to_accuracy_s", "cost_to_accuracy_usd", "usd_per_1m_samples", "train_seconds",
         "cost_usd", "sec_per_step", "est_usd", "est_hours"}
CONFIG_COLUMNS = [("key", "#"), ("config_id", "configuration"), ("instance_type", "instance"),
                  ("label", "hyperparameters"), ("runs_text", "runs"), ("usd_per_hour", "$/h"),
                  ("samples_per_s", "samples/s"), ("step_time_cv", "step time CV (median of runs)"), ("time_to_accuracy_s", "time to target (s)"),
                  ("cost_to_accuracy_usd", "cost to target ($)"), ("usd_per_1m_samples", "$/1M samples"),
                  ("final_metric", "final metric"), ("status", "status"), ("front", "Pareto front")]


def aggregate(report) -> list[dict]:
    """One entry per configuration, in the report's row order, numbered 1.. (`key`, used by the charts)."""
    groups: dict[str, list[dict]] = {}
    for row in report.rows:
        groups.setdefault(row["config_id"], []).append(row)
    failed: dict[str, list[dict]] = {}
    for run in report.incomplete:
        failed.setdefault(run["config_id"], []).append(run)
    figures = FIGURES + tuple(key for key, _ in metric_columns(report))  # and the user's metrics, last and best
    configs = []
    for cid in list(groups) + [c for c in failed if c not in groups]:
        runs, lost = groups.get(cid, []), failed.get(cid, [])
        first = runs[0] if runs else lost[0]
        reached = sum(r["status"] == "reached" for r in runs)
        status = ("failed" if not runs else "no metric" if any(r["status"] == "no metric" for r in runs)
                  else "missed" if any(r["status"] == "missed" for r in runs)
                  else "slice" if all(r["status"] == "slice" for r in runs) else "reached" if reached else "complete")
        config = {"config_id": cid, "instance_type": first.get("instance_type"), "label": first.get("label", ""),
                  "runs": len(runs), "failed": len(lost), "reached": reached, "status": status,
                  "run_ids": [r["run_id"] for r in runs], "market": runs[0]["market"] if runs else None,
                  "usd_per_hour": runs[0]["usd_per_hour"] if runs else None,
                  "on_demand_usd_per_hour": runs[0].get("on_demand_usd_per_hour") if runs else None,
                  "price_source": runs[0].get("price_source") if runs else None}
        # the spread of step times within the runs: a slice's own (its prediction's), else the run's
        config["step_time_cv"] = spread(r.get("pred_cv") if r["status"] == "slice" else r.get("step_time_cv")
                                        for r in runs)[0]
        for name in figures:
            config[name], config[f"{name}_cv"] = spread(r.get(name) for r in runs)
            values = [r[name] for r in runs if isinstance(r.get(name), (int, float))]
            config[f"{name}_range"] = (min(values), max(values)) if values else None
        configs.append(config)
    for key, config in enumerate(configs, start=1):
        config["key"] = key
    _mark_front(configs, uses_target(report))
    return configs


SCALING_NOTE = ("Scaling efficiency = samples/s per GPU of a multi-GPU run (torchrun, DistributedDataParallel) / "
                "samples/s of the single-GPU runs (median) of the same workload, hyperparameters (seed aside) and GPU "
                "model in this campaign; the global batch is the same, so 1.0 is perfect strong scaling.")


def scaling_efficiency(rows: list[dict]) -> None:
    """Set `samples_per_s_per_device` (samples/s / world_size) on every GPU run whose world size is known, and
    `scaling_efficiency` on multi-GPU runs that have a single-GPU counterpart (see SCALING_NOTE)."""
    def key(row):
        hyper = {k: v for k, v in (row.get("hyperparameters") or {}).items() if k != "seed"}
        return row.get("workload"), repr(sorted(hyper.items())), row.get("gpu_model")

    def usable(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0

    single: dict[tuple, list[float]] = {}
    for row in rows:
        if row.get("gpu_model") and row.get("world_size") == 1 and usable(row.get("samples_per_s")):
            single.setdefault(key(row), []).append(float(row["samples_per_s"]))
    for row in rows:
        world, rate = row.get("world_size"), row.get("samples_per_s")
        if not row.get("gpu_model") or not usable(world) or not usable(rate) or isinstance(world, float):
            continue
        row["samples_per_s_per_device"] = rate / world
        base = single.get(key(row)) if world > 1 else None
        if base:
            row["scaling_efficiency"] = rate / world / statistics.median(base)


def uses_target(report) -> bool:
    """Ranked by time and cost to the target: a target is set and the runs trained to the end (not slices)."""
    return report.target is not None and not any(r["status"] == "slice" for r in report.rows)


def chart_point(config: dict, with_target: bool) -> tuple[float, float] | None:
    """Where a configuration sits on the time/cost chart: its median time and cost to target; one that
    missed it (or a campaign without target): its median training time and that time's cost at its price
    (a lower bound of what reaching the target would take)."""
    if with_target and config["status"] == "reached":
        t, c = config["time_to_accuracy_s"], config["cost_to_accuracy_usd"]
    else:
        t = config["train_seconds"]
        c = t * config["usd_per_hour"] / 3600 if t is not None and config["usd_per_hour"] is not None else None
    return (t, c) if t is not None and c is not None else None


def _mark_front(configs: list[dict], with_target: bool) -> None:
    """`on_front`: on the Pareto front of time against cost to target, among the configurations that
    reached the target (all complete ones when the campaign has no target); missed ones never are."""
    eligible = [c for c in configs if (c["status"] == "reached" if with_target else c["runs"] > 0)]
    points = [(c, chart_point(c, with_target)) for c in eligible]
    points = [(c, p) for c, p in points if p is not None]
    front = set(pareto_front([p for _, p in points]))
    for c in configs:
        c["on_front"] = False
    for index, (c, _) in enumerate(points):
        c["on_front"] = index in front


def _gap(winner: dict, other: dict, name: str) -> float | None:
    a, b = winner.get(name), other.get(name)
    return abs(b - a) / abs(a) if a and b is not None else None


def noise(config: dict, name: str) -> tuple[float | None, str]:
    """A configuration's relative spread on a figure, and where it comes from: the larger of the CV between
    its repeats and (figures in TIMED) the CV of its step times within the runs; (None, "") without either."""
    found = []
    if config.get(f"{name}_cv") is not None:
        found.append((config[f"{name}_cv"], f"CV {config[f'{name}_cv']:.1%} between {config['runs']} repeats"))
    if name in TIMED and config.get("step_time_cv") is not None:
        found.append((config["step_time_cv"], f"step-time CV {config['step_time_cv']:.1%} within the run"
                      + ("s" if config["runs"] > 1 else "")))
    return max(found, key=lambda f: f[0]) if found else (None, "")


def within_noise(winner: dict, other: dict, name: str) -> tuple[bool, float | None, float | None]:
    """(within noise?, relative gap, the larger spread of the two: None when neither has one). Within noise:
    the intervals median x (1 +- spread) overlap; without any spread, a gap under NOISY_CV."""
    gap = _gap(winner, other, name)
    if gap is None:
        return False, None, None
    spreads = [noise(winner, name)[0], noise(other, name)[0]]
    if spreads == [None, None]:
        return gap < NOISY_CV, gap, None
    (a, sa), (b, sb) = ((c[name], s or 0.0) for c, s in zip((winner, other), spreads))
    low, high = max(a - abs(a) * sa, b - abs(b) * sb), min(a + abs(a) * sa, b + abs(b) * sb)
    return low <= high, gap, max(s for s in spreads if s is not None)


def _best(configs: list[dict], name: str, *, lowest: bool = True) -> dict | None:
    """The winner by median `name`, with its runner-up, whether they are within noise and whether the spread
    is larger than their difference (`cannot_rank`), and every other choice within noise of the winner."""
    ranked = sorted((c for c in configs if c.get(name) is not None), key=lambda c: c[name], reverse=not lowest)
    if not ranked:
        return None
    choice = {"config": ranked[0], "figure": name, "runner_up": None, "within_noise": False, "cannot_rank": False,
              "also_within_noise": []}
    for other in ranked[1:]:
        noisy, gap, spread_ = within_noise(ranked[0], other, name)
        if other is ranked[1]:
            choice.update(runner_up=other, within_noise=noisy, gap=gap, noise=spread_,
                          cannot_rank=noisy and (spread_ is None or spread_ > gap))
        elif noisy:
            choice["also_within_noise"].append((other, gap))
    return choice


def recommend(report) -> dict:
    configs, target = report.configs, report.target
    slices = [c for c in configs if c["status"] == "slice"]
    if slices:  # benchmark slices: the whole job's predicted cost and time
        eligible, cost_name, time_name, target = slices, "est_usd", "est_hours", None
    elif target:
        eligible = [c for c in configs if c["status"] == "reached"]
        cost_name, time_name = "cost_to_accuracy_usd", "time_to_accuracy_s"
    else:
        eligible = [c for c in configs if c["runs"] > 0]
        cost_name, time_name = "cost_usd", "train_seconds"
    rec = {"target": target, "eligible": len(eligible), "predicted": bool(slices),
           "cheapest": _best(eligible, cost_name), "fastest": _best(eligible, time_name),
           "best_throughput_cost": _best(eligible, "usd_per_1m_samples"),
           "missed": [c for c in configs if c["status"] == "missed"],
           "no_metric": [c for c in configs if c["status"] == "no metric"],
           "failed": [c for c in configs if c["failed"]]}
    cheapest = rec["cheapest"]["config"] if rec["cheapest"] else None
    rec["spot"] = _spot(cheapest, cost_name) if cheapest else None
    if cheapest is None:
        rec["headline"] = (f"no configuration reached {_target_text(report)}" if target
                           else "no complete run to recommend")
    else:
        rec["headline"] = (f"{_name(cheapest)} is the cheapest to reach {_target_text(report)}" if target
                           else f"{_name(cheapest)} is the cheapest predicted for the whole job" if slices
                           else f"{_name(cheapest)} is the cheapest run")
        if rec["cheapest"]["within_noise"]:  # the answer is a tie, and the headline says so
            rec["headline"] += (f", within noise of {_name(rec['cheapest']['runner_up'])}"
                                + (" (cannot rank them: run more repeats)" if rec["cheapest"]["cannot_rank"] else ""))
    return rec


def _spot(config: dict, cost_name: str) -> dict:
    price, on_demand = config.get("usd_per_hour"), config.get("on_demand_usd_per_hour")
    saving = 1 - price / on_demand if price and on_demand else None
    cost = config.get(cost_name)
    return {"market": config.get("market"), "usd_per_hour": price, "on_demand_usd_per_hour": on_demand,
            "saving": saving, "saved_usd": cost * (on_demand / price - 1) if cost and price and on_demand else None,
            "source": config.get("price_source")}


def _name(config: dict) -> str:
    return f"{config['instance_type'] or '?'} {config['label']}".strip()


def _target_text(report) -> str:
    target = report.target or {}
    sign = ">=" if report.higher_is_better else "<="
    return f"{target.get('metric')} {sign} {target.get('value')}"


def _fmt(value) -> str:
    return format_value(value)


def _spread_text(config: dict, name: str) -> str:
    cv = config.get(f"{name}_cv")
    within = config.get("step_time_cv") if name in TIMED else None
    steps = f", step-time CV {within:.1%}" + (" (noisy)" if within > NOISY_CV else "") if within is not None else ""
    if config["runs"] < 2:
        return "1 run" + steps
    if cv is None:
        return f"median of {config['runs']}" + steps
    return f"median of {config['runs']}, CV {cv:.1%}" + (" (noisy)" if cv > NOISY_CV else "") + steps


def _choice_line(title: str, choice: dict, unit: str, extra: str = "") -> list[str]:
    config, name = choice["config"], choice["figure"]
    value = f"${_fmt(config[name])}" if unit == "$" else f"{_fmt(config[name])} {unit}".strip()
    lines = [f"{title}: {_name(config)}: {value}{extra} ({_spread_text(config, name)})"]
    if choice["within_noise"] and choice["runner_up"] is not None:
        other, gap = choice["runner_up"], choice["gap"]
        if choice["noise"] is None:
            why = (f"differs by {gap:.1%}, under 5 % with single runs and no step-time spread: cannot rank them; "
                   "`repeats: 3` would tell them apart")
        elif choice["cannot_rank"]:
            source = max((noise(c, name) for c in (config, other)), key=lambda n: n[0] or 0.0)[1]
            why = (f"differs by {gap:.1%}, less than the spread ({source}): cannot rank them; "
                   f"{'more repeats' if config['runs'] > 1 else '`repeats: 3`'} would tell them apart")
        else:
            why = (f"differs by {gap:.1%}; their ranges (median +- spread: {noise(config, name)[1] or 'no spread'}; "
                   f"{noise(other, name)[1] or 'no spread'}) overlap: either will do")
        lines.append(f"  within noise: {_name(other)} {why}")
        if choice["also_within_noise"]:
            lines.append("  also within noise: " + "; ".join(f"{_name(c)} ({gap:.1%} apart)"
                                                              for c, gap in choice["also_within_noise"]))
    return lines


def recommendation_lines(report) -> list[str]:
    """Plain text, the first line naming the answer; used by the terminal, Markdown and HTML reports."""
    rec = report.recommendation
    lines = [f"{report.campaign}: {rec['headline']}"]
    target = rec["target"]
    if rec["cheapest"] and rec["predicted"]:
        cfg, fast = rec["cheapest"]["config"], rec["fastest"]["config"]
        lines += _choice_line("cheapest", rec["cheapest"], "$", f" predicted for the whole job, {_fmt(cfg.get('est_hours'))} h")
        lines += _choice_line("fastest", rec["fastest"], "h", f" predicted, for ${_fmt(fast.get('est_usd'))}")
    elif rec["cheapest"]:
        cfg = rec["cheapest"]["config"]
        extra = f" to target, in {_fmt(cfg.get('time_to_accuracy_s'))} s" if target else \
            f" a run, {_fmt(cfg.get('train_seconds'))} s of training"
        lines += _choice_line("cheapest", rec["cheapest"], "$", extra)
        fast = rec["fastest"]["config"]
        extra = f" to target, for ${_fmt(fast.get('cost_to_accuracy_usd'))}" if target else " of training"
        lines += _choice_line("fastest", rec["fastest"], "s", extra)
    if rec["best_throughput_cost"]:
        lines += _choice_line("best $/1M samples", rec["best_throughput_cost"], "$")
    spot = rec["spot"]
    if spot and spot["market"] == "spot":
        if spot["saving"] and spot["saving"] > 0:
            saved = f", ${_fmt(spot['saved_usd'])} less {'to target' if target else 'per run'}" if spot["saved_usd"] else ""
            lines.append(f"spot vs on-demand: ${_fmt(spot['usd_per_hour'])}/h spot against "
                         f"${_fmt(spot['on_demand_usd_per_hour'])}/h on demand: {spot['saving']:.0%} saved{saved}")
        else:
            lines.append(f"spot vs on-demand: no saving measured: spot was priced at the on-demand "
                         f"${_fmt(spot['on_demand_usd_per_hour'])}/h ({spot['source']})")
    elif spot:
        lines.append(f"spot vs on-demand: these runs ran on demand at ${_fmt(spot['usd_per_hour'])}/h; "
                     "run with market: spot to measure the saving")
    if rec["missed"]:
        lines.append("missed the target (not recommended): " + "; ".join(
            f"{_name(c)} (final {_fmt(c['final_metric'])}"
            + (f", {c['runs'] - c['reached']} of {c['runs']} runs missed)" if c["reached"] else ")")
            for c in rec["missed"]))
    if rec.get("no_metric"):
        lines.append(f"never printed the target metric {(target or {}).get('metric')} (not recommended; check "
                     "metric_definitions or the script's JSON lines): " + "; ".join(_name(c) for c in rec["no_metric"]))
    if rec["failed"]:
        lines.append("failed or incomplete (not recommended): " + "; ".join(
            f"{_name(c)} ({c['failed']} run(s))" for c in rec["failed"]))
    loaded = [r for r in report.rows if (r.get("host_other_cpus") or 0.0) >= COMPETING_CPUS]
    if loaded:
        lines.append(f"host load: other processes competed for this machine's CPUs during {len(loaded)} of "
                     f"{len(report.rows)} run(s) (up to {max(r['host_other_cpus'] for r in loaded):.1f} CPUs on "
                     f"average: {', '.join(r['run_id'] for r in loaded)}): their figures are slower and noisier than "
                     "on an idle machine")
    return lines


def config_cells(config: dict, extra: tuple = ()) -> dict:
    """A configuration's figures (FIGURES, and the `extra` ones) as table cells: median, with its CV when
    repeated (`!` above 5 %)."""
    cells = dict(config)
    cells["runs_text"] = f"{config['runs']}" + (f" (+{config['failed']} failed)" if config["failed"] else "")
    cells["front"] = "yes" if config.get("on_front") else ""
    for name in FIGURES + tuple(extra):
        cv = config.get(f"{name}_cv")
        if config.get(name) is not None and cv is not None:
            cells[name] = f"{format_value(config[name])} (CV {cv:.1%}{' !' if cv > NOISY_CV else ''})"
    return cells


def _with_cv(value, cv) -> str:
    """`26.9 (7%!)`: the value, its CV in brackets when known (over 5 %: marked)."""
    return format_value(value) + (f" ({cv:.0%}{'!' if cv > NOISY_CV else ''})" if cv is not None else "")


def terminal_cells(config: dict, names: tuple = ("samples_per_s", "time_to_accuracy_s", "cost_to_accuracy_usd")) -> dict:
    """Compact cells (`<name>_text`) for the terminal: `26.9 (7%!)` = median 26.9, CV 7 % between repeats (over
    5 %: marked)."""
    cells = dict(config)
    cells["runs_text"] = f"{config['runs']}" + (f" +{config['failed']} failed" if config["failed"] else "")
    for name in names:
        cells[f"{name}_text"] = _with_cv(config.get(name), config.get(f"{name}_cv"))
    return cells


def terminal_run_cells(row: dict) -> dict:
    """A run's cells for the terminal: its samples/s and sec/step with the CV of its step times, `1,204.3 (3%)`."""
    return {**row, **{f"{name}_text": _with_cv(row.get(name), row.get("step_time_cv"))
                      for name in ("samples_per_s", "sec_per_step")}}
