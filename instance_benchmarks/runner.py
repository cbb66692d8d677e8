"""The one campaign loop, for every backend and environment: plan -> launch -> poll -> collect ->
relaunch -> report -> teardown.

The runner owns the budget, campaign.json, launch.json (one entry per attempt), fallback, attempts and
the report; backends (`backends/`) only make cloud calls, and the environment (`environment.py`, or
`embedded/` for the embedded default) decides where those calls go and how time passes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone

from instance_benchmarks.backends.base import Backend, LaunchRefused, RunState, TeardownSummary
from instance_benchmarks.backends.infrastructure import require_bucket
from instance_benchmarks.backends.registry import BACKENDS, DEFAULT
from instance_benchmarks.campaigns.code import resolved
from instance_benchmarks.campaigns.models import download_run
from instance_benchmarks.campaigns.plan import check_budget, estimate, spent_usd
from instance_benchmarks.campaigns.report import write_report
from instance_benchmarks.campaigns.store import (
    campaign_document, campaign_region, campaign_specs, current_run_ids, list_campaigns, load_run_records, log_tail,
    read_progress, read_record, record_campaign, run_location, write_json,
)
from instance_benchmarks.catalog import Catalog, load_catalog
from instance_benchmarks.catalog.pricing import PriceQuote
from instance_benchmarks.core.billing import billed_seconds, cost_usd
from instance_benchmarks.core.contract import EXIT_INPUT_ERROR, now_iso
from instance_benchmarks.core.errors import TrainfleetInputError, did_you_mean, known_names
from instance_benchmarks.core.validation import validate_identifier

# Retries are for interruptions and capacity (up to max_attempts): an attempt that ended before it could
# finish (spot reclaim, an instance that vanished, a teardown) or never started (no capacity, a launcher that
# died). A failed script is relaunched once, unless it failed on its input (exit 2); failing the same way
# twice (same outcome, exit status and last log line) ends it, and so does a timeout.
RETRIED = ("interrupted", "lost", "torn down", "not_launched", "launch_refused")
RETRIED_ONCE = ("failed",)
CAPACITY_FAILURES = ("CapacityError", "InsufficientCapacityError")  # a job that failed for want of capacity
TORN_DOWN = "torn down"
# Attempts that do not count against max_attempts: ended by the user (Ctrl-C, `campaign teardown`) or never
# started (a launcher killed before its launch call returned); each is still recorded, with its cost.
NOT_COUNTED = (TORN_DOWN, "not_launched")


def counted_attempts(record: dict) -> int:
    """The attempts of a run that count against max_attempts (see NOT_COUNTED)."""
    return sum(1 for a in record.get("attempts") or [] if not isinstance(a, dict) or a.get("outcome") not in NOT_COUNTED)


@dataclass
class LaunchSummary:
    campaign: str
    backend: str
    estimate_worst_usd: float
    estimate_expected_usd: float | None
    spent_usd: float
    launched: list[dict] = field(default_factory=list)
    skipped_complete: list[str] = field(default_factory=list)
    skipped_live: list[str] = field(default_factory=list)
    gave_up: list[str] = field(default_factory=list)
    refused: list[dict] = field(default_factory=list)  # run id + the cloud's reason (capacity, quota)
    stopped: str | None = None       # why the launch stopped early (a quota to raise, a type not offered)
    not_started: list[str] = field(default_factory=list)  # runs left unlaunched because it stopped
    unreadable: list[str] = field(default_factory=list)   # runs whose records in S3 cannot be read (and why)
    why_given_up: dict[str, str] = field(default_factory=dict)  # run id -> why it is not relaunched


def campaign_backends(env, campaign: str) -> list[Backend]:
    """The backends a campaign used (campaign.json in S3), or every backend if it records none."""
    names = {spec.get("backend", DEFAULT) for spec in campaign_specs(env.client("s3"), env.infra.bucket, campaign)}
    return [env.backend(name) for name in sorted(names or BACKENDS)]


def env_region(env) -> str | None:
    """The region an environment's calls go to (its own, else the AWS configuration's)."""
    return env.region or env.session().region_name


def require_campaign(env, campaign: str) -> dict:
    """A campaign id as typed on the command line: a valid id (never a tag-filter wildcard) that was
    launched in this bucket (its campaign.json); returns campaign.json. A typo, or the wrong region, is a
    one-line input error naming the campaigns that exist, not an empty table or a phantom report."""
    validate_identifier(campaign, "campaign")
    s3, bucket = env.client("s3"), env.infra.bucket
    document = campaign_document(s3, bucket, campaign)
    if document is None:
        known = [name for name in list_campaigns(s3, bucket) if name != campaign]
        raise TrainfleetInputError(f"no campaign {campaign!r} in s3://{bucket} (region {env_region(env)}); "
                                   f"known: {known_names(known)}{did_you_mean(campaign, known)}")
    return document


def campaign_environment(env, campaign: str, region: str | None = None):
    """The environment a command about an existing campaign runs in: the campaign must exist (else a
    one-line input error), and its calls go to the region it was launched in (campaign.json), unless
    `region` was given. S3 finds the bucket from any region; instances and jobs live in one."""
    document = require_campaign(env, campaign)
    stored = campaign_region(document)
    if region is None and stored and stored != env_region(env):
        return env.for_region(stored)
    return env


def live_runs(env, campaign: str) -> dict[str, RunState]:
    return {run_id: state for backend in campaign_backends(env, campaign)
            for run_id, state in backend.live(campaign).items()}


def _failure_signature(s3, bucket: str, campaign: str, run_id: str, attempt: dict) -> tuple:
    """How an attempt ended: outcome, exit status and its last log line (or the agent's note)."""
    line = attempt.get("note") or attempt.get("failure")
    if not line and isinstance(attempt.get("attempt"), int):
        tail = log_tail(s3, bucket, campaign, run_id, attempt["attempt"], lines=1)
        line = tail[-1].strip() if tail else None
    return attempt.get("outcome"), attempt.get("exit_code"), line


def retry_refusal(s3, bucket: str, campaign: str, run_id: str, record: dict) -> str | None:
    """Why a run with no result must not be relaunched, or None when it may be (max_attempts aside)."""
    attempts = record.get("attempts") or []
    if not attempts:
        return None
    last = attempts[-1]
    outcome = last.get("outcome")
    if last.get("exit_code") == EXIT_INPUT_ERROR:
        return f"failed on its input (exit {EXIT_INPUT_ERROR}): fix the campaign or the script"
    if outcome in RETRIED or str(last.get("failure") or "").startswith(CAPACITY_FAILURES):
        return None
    if outcome not in RETRIED_ONCE:
        return f"{outcome}: not retried"
    earlier = [a for a in attempts[:-1] if a.get("outcome") in RETRIED_ONCE]
    if earlier:
        now = _failure_signature(s3, bucket, campaign, run_id, last)
        before = _failure_signature(s3, bucket, campaign, run_id, earlier[-1])
        if now == before:
            return f"failed the same way twice (exit {last.get('exit_code')}: {now[2] or 'no log'})"
    return None


def _attempt_price(spec, run, record: dict, quotes: dict[tuple, PriceQuote]) -> PriceQuote:
    """The first attempt runs as specified; after an interruption the fallback (type and/or market) applies."""
    attempts = record.get("attempts", [])
    if spec.fallback and attempts and attempts[-1].get("outcome") == "interrupted":
        return quotes[(spec.fallback.get("instance_type", run.instance_type), spec.fallback.get("market", spec.market))]
    return quotes[(run.instance_type, spec.market)]


def _candidates(spec, run, price: PriceQuote, quotes: dict[tuple, PriceQuote]) -> list[PriceQuote]:
    """The price an attempt launches at, then the spec's fallback for when no AZ has capacity for it."""
    if not spec.fallback:
        return [price]
    fallback = quotes[(spec.fallback.get("instance_type", run.instance_type), spec.fallback.get("market", spec.market))]
    return [price] + ([fallback] if fallback != price else [])


def launch(env, spec, *, catalog: Catalog | None = None, confirm=None) -> LaunchSummary:
    """Price, check the budget, then launch every run that is neither complete, live nor given up."""
    catalog = catalog or load_catalog()
    env.check_repo(spec.repo)
    spec = resolved(spec)  # bound to the commit its ref names now: other code is measured as other runs
    s3, bucket = env.client("s3"), env.infra.bucket
    require_bucket(s3, bucket)
    backend = env.backend(spec.backend)
    wanted = {(itype, spec.market) for itype in spec.matrix["instance_type"]}
    if spec.fallback:
        wanted |= {(spec.fallback.get("instance_type", itype), spec.fallback.get("market", spec.market))
                   for itype in spec.matrix["instance_type"]}
    quotes = {(itype, market): backend.quote(spec, catalog.get(itype), market, catalog) for itype, market in wanted}
    plan = estimate(spec, {itype: quotes[(itype, spec.market)] for itype in spec.matrix["instance_type"]})
    live = backend.live(spec.campaign)  # first: a run that is not live now has ended before settle reads it
    known = settle(env, spec.campaign, specs=[spec.to_dict()])
    summary = LaunchSummary(spec.campaign, spec.backend, plan.worst_case_usd, plan.expected_usd, 0.0,
                            skipped_live=sorted(r for r in live if r in plan.per_run))
    pending, prices, records = [], {}, {}
    for run in spec.runs():
        stored = known.get(run.run_id, {"launch": {}, "result": None})
        record = stored["launch"] or {"run_id": run.run_id, "label": run.label, "attempts": []}
        summary.spent_usd += spent_usd(record)
        if stored.get("unreadable"):  # never relaunched over records it cannot read (their cost, their result)
            summary.unreadable.append(f"{run.run_id}: {stored['unreadable']}")
        elif stored["result"] is not None:
            summary.skipped_complete.append(run.run_id)
        elif run.run_id in live:
            continue
        elif refusal := retry_refusal(s3, bucket, spec.campaign, run.run_id, record):
            summary.gave_up.append(run.run_id)
            summary.why_given_up[run.run_id] = refusal
        elif (used := counted_attempts(record)) >= spec.max_attempts:
            summary.gave_up.append(run.run_id)
            summary.why_given_up[run.run_id] = f"{used} of max_attempts {spec.max_attempts} used"
        else:
            pending.append(run)
            records[run.run_id] = record
            prices[run.run_id] = _attempt_price(spec, run, record, quotes)
    # Live runs may still bill up to their worst case; count them, or a re-launch could overshoot.
    committed = sum(plan.per_run[r][1] for r in summary.skipped_live)
    committed += sum(_earlier_worst(known.get(r), spec) for r in live if r not in plan.per_run)  # earlier code
    needed = sum(max(q.worst_cost(spec.max_runtime_minutes * 60) for q in _candidates(spec, r, prices[r.run_id], quotes))
                 for r in pending)
    check_budget(spec.budget_usd, needed=needed, already=summary.spent_usd + committed, count=len(pending))
    if confirm is not None and pending and not confirm(plan, pending):
        return summary
    record_campaign(s3, bucket, spec, {
        "catalog_as_of": catalog.as_of, "written_at": now_iso(),
        "estimate": {"worst_case_usd": plan.worst_case_usd, "expected_usd": plan.expected_usd, "runs": plan.runs},
        "run_ids": sorted(plan.per_run),  # the current runs; the campaign's others were made from earlier code
        "quotes": {f"{t} {m}": q.to_dict() for (t, m), q in quotes.items()},
    })
    for index, run in enumerate(pending):
        refused = _launch_run(env, backend, spec, run, records[run.run_id], prices[run.run_id], quotes, catalog, summary)
        if refused is not None and refused.stops_launch:
            summary.stopped = str(refused)
            summary.not_started = [r.run_id for r in pending[index:]]
            break
    return summary


def _earlier_worst(stored: dict | None, spec) -> float:
    """The worst case of a live run of earlier code (still billing): its recorded price, at the higher of it and
    on-demand, for max_runtime_minutes."""
    attempts = ((stored or {}).get("launch") or {}).get("attempts") or [{}]
    price = attempts[-1].get("price") if isinstance(attempts[-1].get("price"), dict) else {}
    rates = [price.get(key) for key in ("usd_per_hour", "on_demand_usd_per_hour")]  # from the bucket: untrusted
    rates = [r for r in rates if isinstance(r, (int, float)) and not isinstance(r, bool) and math.isfinite(r)]
    return cost_usd(spec.max_runtime_minutes * 60, max(rates, default=0.0))


def _launch_run(env, backend: Backend, spec, run, record: dict, price: PriceQuote, quotes: dict, catalog: Catalog,
                summary: LaunchSummary) -> LaunchRefused | None:
    """One attempt of one run, recorded before and after the call; with no capacity for its type in any of
    the stack's AZs, the spec's fallback (type and/or market) is tried once. Returns the refusal, if any."""
    s3, bucket = env.client("s3"), env.infra.bucket
    location = run_location(s3, bucket, spec.campaign, run.run_id)
    candidates = _candidates(spec, run, price, quotes)
    record.update(hyperparameters=run.hyperparameters, instance_type=run.instance_type, backend=spec.backend,
                  code=spec.code())  # what the run is bound to: repo, commit, workdir, script, setup, run
    for candidate in candidates:
        attempt = len(record["attempts"]) + 1
        # written before the call: a launcher killed during it leaves an attempt that settle() resolves
        record["attempts"].append({"attempt": attempt, "backend": spec.backend, "outcome": "launching",
                                   "instance_type": candidate.instance_type, "market": candidate.market,
                                   "price": candidate.to_dict(), "launched_at": now_iso(), "cost_usd": None})
        write_json(location, "launch.json", record)
        try:
            entry = backend.launch(spec, run, attempt, candidate, catalog)
        except LaunchRefused as refused:
            record["attempts"][-1].update(outcome="launch_refused", error=str(refused), cost_usd=0.0)
            write_json(location, "launch.json", record)
            summary.refused.append({"run_id": run.run_id, "error": str(refused), "kind": refused.kind})
            if refused.stops_launch or candidate is candidates[-1]:
                return refused
            continue
        record["attempts"][-1] = entry
        write_json(location, "launch.json", record)
        summary.launched.append({"run_id": run.run_id, **entry})
        return None
    return None


def settle(env, campaign: str, specs: list[dict] | None = None) -> dict[str, dict]:
    """Let each backend settle finished attempts (outcome, cost, result.json); returns the run records
    as settled ({run_id: {"launch": ..., "result": ...}})."""
    s3, bucket = env.client("s3"), env.infra.bucket
    by_backend = {spec.get("backend", DEFAULT): spec for spec in (specs or campaign_specs(s3, bucket, campaign))}
    records = {record["run_id"]: record for record in load_run_records(s3, bucket, campaign)}
    for record in records.values():
        if record.get("unreadable"):
            continue
        attempts = record["launch"].get("attempts") or []
        if record["result"] is not None or not attempts or attempts[-1].get("outcome") not in ("launched", "launching"):
            continue
        name = attempts[-1].get("backend", DEFAULT)
        spec = by_backend.get(name, {"campaign": campaign, "backend": name})
        location = run_location(s3, bucket, campaign, record["run_id"])
        if env.backend(name).collect(spec, record["run_id"], record["launch"]):
            write_json(location, "launch.json", record["launch"])
            record["result"] = read_record(location, "result.json", record["run_id"])  # a backend may have just written it
    return records


def teardown(env, campaign: str) -> list[TeardownSummary]:
    """End everything of the campaign on every backend it used (by tag), record each attempt it ended
    (outcome `torn down`, priced from the cloud's start time to the end), then settle the rest."""
    summaries = [backend.teardown(campaign) for backend in campaign_backends(env, campaign)]
    for summary in summaries:
        for ended in summary.ended:
            record_torn_down(env, campaign, ended)
    settle(env, campaign)
    return summaries


def record_torn_down(env, campaign: str, ended: dict) -> bool:
    """Settle the attempt a teardown ended in its run's launch.json, unless it settled itself already.
    `ended`: run_id, attempt (if known), resource (what the backend ended; `key`: the backend's own name for it,
    recorded too), started_at
    (the cloud's launch or start time; else the attempt's launched_at) and ended_at, ISO 8601; `ran`: False
    for an instance that never ran (not billed)."""
    location = run_location(env.client("s3"), env.infra.bucket, campaign, ended["run_id"])
    try:
        record = read_record(location, "launch.json", ended["run_id"])
    except ValueError:  # unreadable: reported as such by status; never overwritten
        return False
    if not record or not isinstance(record.get("attempts"), list):
        return False
    for attempt in reversed(record["attempts"]):
        if attempt.get("outcome") not in ("launched", "launching"):
            continue
        resource = attempt.get("resource")
        if resource != ended["resource"] and not (resource is None and attempt.get("attempt") == ended.get("attempt")):
            continue
        started = datetime.fromisoformat(ended.get("started_at") or attempt["launched_at"])
        seconds = max(0.0, (datetime.fromisoformat(ended["ended_at"]) - started).total_seconds())
        price = (attempt.get("price") or {}).get("usd_per_hour") or 0.0
        if ended.get("ran", True):
            attempt.update(run_seconds=round(seconds, 3), billed_seconds=billed_seconds(seconds),
                           cost_usd=cost_usd(seconds, price), note="ended by teardown")
        else:  # ended while it waited to start: nothing to bill
            attempt.update(run_seconds=0.0, billed_seconds=0, cost_usd=0.0, note="ended by teardown before it ran")
        attempt.update(outcome=TORN_DOWN, ended_at=ended["ended_at"], resource=ended["resource"])
        attempt[ended["key"]] = ended["resource"]  # the backend's own record of it
        write_json(location, "launch.json", record)
        return True
    return False


# Metric names that say how far a run is, not how well it does.
PROGRESS_KEYS = ("epoch", "step")
_NOT_METRICS = frozenset(PROGRESS_KEYS) | {"t", "train_t", "attempt"}


def progress_fields(latest: dict | None, target_metric: str | None = None) -> dict:
    """`progress` ("epoch 2 step 40") and `metric` ("loss 0.59") from a run's latest metric values: the
    campaign's target metric if the script prints it, else its first other numeric value."""
    latest = latest or {}
    progress = " ".join(f"{key} {latest[key]:g}" for key in PROGRESS_KEYS
                        if isinstance(latest.get(key), (int, float)) and not isinstance(latest.get(key), bool))
    numeric = [key for key, value in latest.items()
               if key not in _NOT_METRICS and isinstance(value, (int, float)) and not isinstance(value, bool)]
    name = target_metric if target_metric in numeric else (numeric[0] if numeric else None)
    return {"progress": progress or None, "metric": f"{name} {latest[name]:.4g}" if name else None}


def _seconds(attempt: dict) -> float:
    """Seconds a settled attempt's resource ran (an instance, a training job)."""
    value = attempt.get("run_seconds")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _target_metric(specs: list[dict]) -> str | None:
    return next((spec["target"]["metric"] for spec in specs if isinstance(spec.get("target"), dict)
                 and spec["target"].get("metric")), None)


def status_rows(env, campaign: str, now: datetime | None = None) -> list[dict]:
    """One row per run: state, resource, price, attempt, latest progress and metric (what the agent pushed,
    else the result's final values), time on the instance or job, and cost so far (live attempts billed to
    now)."""
    now = now or datetime.now(timezone.utc)
    live = live_runs(env, campaign)
    s3, bucket = env.client("s3"), env.infra.bucket
    target = _target_metric(campaign_specs(s3, bucket, campaign))
    current = current_run_ids(campaign_document(s3, bucket, campaign))
    rows = []
    for record in load_run_records(s3, bucket, campaign):
        attempts = record["launch"].get("attempts", [])
        last = attempts[-1] if attempts else {}
        state = live.get(record["run_id"])
        cost = spent_usd(record["launch"])
        elapsed = sum(_seconds(a) for a in attempts)
        if state and last.get("cost_usd") is None and last.get("launched_at"):
            running = (now - datetime.fromisoformat(last["launched_at"])).total_seconds()
            cost += cost_usd(running, last["price"]["usd_per_hour"])
            elapsed += max(0.0, running)
        status = ("complete" if record["result"] else "running" if state else last.get("outcome") or "unknown")
        if current is not None and record["run_id"] not in current:
            status = f"earlier code, {status}"  # not one of the current runs: never counted as this code's
        pushed = read_progress(s3, bucket, campaign, record["run_id"], last["attempt"]) \
            if isinstance(last.get("attempt"), int) else None
        latest = pushed.get("latest") if isinstance((pushed or {}).get("latest"), dict) else None
        if latest is None and isinstance(record["result"], dict):
            latest = record["result"].get("final") if isinstance(record["result"].get("final"), dict) else None
        rows.append({
            "run_id": record["run_id"], "label": record["launch"].get("label", ""),
            "status": f"unreadable: {record['unreadable']}" if record.get("unreadable") else status,
            "backend": last.get("backend", DEFAULT), "resource": last.get("resource"),
            "state": state.state if state else "-", "instance_type": last.get("instance_type"),
            "market": last.get("market"), "usd_per_hour": last.get("price", {}).get("usd_per_hour"),
            "attempts": len(attempts), "cost_usd": cost, "live": state is not None,
            "attempt": last.get("attempt"), "elapsed_s": round(elapsed), **progress_fields(latest, target),
        })
    return rows


def failure_report(env, campaign: str, *, lines: int = 10) -> list[dict]:
    """Each run without a result: its last outcome, exit status, why, and the last lines of its log in S3
    (the script's, else the bootstrap log), for `campaign run` and `collect` to print before exiting 1."""
    s3, bucket = env.client("s3"), env.infra.bucket
    current = current_run_ids(campaign_document(s3, bucket, campaign))
    failures = []
    for record in load_run_records(s3, bucket, campaign):
        if record["result"] is not None and not record.get("unreadable"):
            continue
        if current is not None and record["run_id"] not in current:
            continue  # a run of earlier code: the report lists it apart
        attempts = record["launch"].get("attempts") or []
        last = attempts[-1] if attempts else {}
        tail = log_tail(s3, bucket, campaign, record["run_id"], last["attempt"], lines) \
            if isinstance(last.get("attempt"), int) else []
        outcome = f"unreadable: {record['unreadable']}" if record.get("unreadable") else \
            last.get("outcome") or "never launched"
        failures.append({"run_id": record["run_id"], "outcome": outcome,
                         "exit_code": last.get("exit_code"), "attempt": last.get("attempt"),
                         "attempts": len(attempts), "note": last.get("note") or last.get("failure"),
                         "log": tail})
    return failures


def failure_lines(failure: dict) -> list[str]:
    """A failure from failure_report as printable lines: one heading, then its log's last lines."""
    exit_code = f", exit {failure['exit_code']}" if failure.get("exit_code") is not None else ""
    note = f": {failure['note']}" if failure.get("note") else ""
    lines = [f"{failure['run_id']}: {failure['outcome']}{exit_code} (attempt {failure['attempt'] or '-'} of "
             f"{failure['attempts']}){note}"]
    if failure["log"]:
        lines.append(f"  last {len(failure['log'])} log line(s) of attempt {failure['attempt']}:")
        lines += [f"    {line}" for line in failure["log"]]
    return lines


class Detached(Exception):
    """Ctrl-C during `campaign run --detach`: the runs keep going; nothing was torn down."""


def stop_message(summary: LaunchSummary) -> str:
    return (f"{summary.campaign} ({summary.backend}): launch stopped, {summary.stopped}; not started: "
            f"{', '.join(summary.not_started)}")


def refusal_lines(summary: LaunchSummary) -> list[str]:
    """One line per run the launch refused or could not read."""
    return ([f"  {refused['run_id']}: launch refused ({refused['error']})" for refused in summary.refused]
            + [f"  {unreadable} (not relaunched; fix or delete it in S3)" for unreadable in summary.unreadable])


def _raise_if_stopped(summaries: list[LaunchSummary]) -> None:
    for summary in summaries:
        if summary.stopped:
            raise TrainfleetInputError(stop_message(summary))


def run_campaign(env, specs: list, *, log=print, confirm=None, progress=None) -> dict:
    """Launch every spec (one campaign, one or more backends), let them run, settle and relaunch
    interrupted runs until none is live or launchable; returns per-spec summaries. `progress` gets the
    status rows after every poll. A launch stopped by a quota (or a type not offered) raises a one-line
    error: the caller tears down what did start."""
    campaign = specs[0].campaign
    specs = [resolved(spec) for spec in specs]  # once: a ref that moves during the campaign changes nothing
    summaries = [launch(env, spec, confirm=confirm) for spec in specs]
    for summary in summaries:
        expected = f", expected ${summary.estimate_expected_usd:.4f}" if summary.estimate_expected_usd is not None else ""
        log(f"{campaign} ({summary.backend}): {len(summary.launched)} launched, worst case "
            f"${summary.estimate_worst_usd:.4f}{expected}")
        for line in refusal_lines(summary):
            log(line)
    _raise_if_stopped(summaries)
    while True:
        env.advance(campaign)
        settle(env, campaign)
        if progress is not None:
            progress(status_rows(env, campaign))
        if live_runs(env, campaign):
            continue
        relaunched = [launch(env, spec) for spec in specs]
        _raise_if_stopped(relaunched)
        if not any(s.launched for s in relaunched):
            for summary in relaunched:
                for run_id, why in sorted(summary.why_given_up.items()):
                    log(f"  {run_id}: given up, {why}")
            return {"launch": summaries}
        log(f"relaunched {sum(len(s.launched) for s in relaunched)} run(s) (interrupted or lost)")


def best_run(report) -> dict | None:
    rows = [r for r in report.rows if r.get("final_metric") is not None]
    if not rows:
        return None
    return (max if report.higher_is_better else min)(rows, key=lambda r: r["final_metric"])


def run_to_report(env, specs: list, *, out, log=print, report=None, confirm=None, progress=None,
                  detach: bool = False) -> dict:
    """`campaign run`: run the campaign, write the report, download the best run's model, tear down and
    check that nothing is left running. After an error or Ctrl-C everything is torn down too, unless
    `detach` is set, in which case Ctrl-C leaves the runs going and raises Detached."""
    campaign = specs[0].campaign
    if any(spec.campaign != campaign for spec in specs):
        raise ValueError("the campaign files of one run must name the same campaign")
    for spec in specs:  # before any AWS call
        env.check_repo(spec.repo)
    s3, bucket = env.client("s3"), env.infra.bucket
    detached = False
    try:
        run_campaign(env, specs, log=log, confirm=confirm, progress=progress)
        built = report(s3, bucket, campaign, out) if report else write_report(s3, bucket, campaign, out)[0]
        best = best_run(built)
        model_files = {}
        if best is not None:
            model_files = download_run(s3, bucket, campaign, best["run_id"], out / "best-model")
            log(f"best run {best['run_id']} ({best['label']}): model and artifacts in {out / 'best-model'} "
                "(SHA-256 verified)")
    except KeyboardInterrupt:
        if not detach:
            log("interrupted: tearing down everything the campaign started ...")
            raise
        detached = True
        live = live_runs(env, campaign)
        raise Detached(f"detached: {len(live)} run(s) of {campaign} keep running and billing. Reattach (and "
                       f"collect, report, tear down) with the same `trainfleet campaign run` command; follow with "
                       f"`trainfleet campaign status {campaign} --watch 30`; end them with "
                       f"`trainfleet campaign teardown {campaign}`") from None
    finally:  # also after an error or Ctrl-C: nothing of the campaign keeps billing
        if not detached:
            torn = teardown(env, campaign)
            left = live_runs(env, campaign)
            log(f"teardown: {sum(len(t.stopped) for t in torn)} instances/jobs ended, "
                f"{sum(len(t.cancelled) for t in torn)} spot requests cancelled, {len(left)} left running")
    return {"report": built, "best": best, "model_files": model_files, "left_running": list(left), "bucket": bucket}
