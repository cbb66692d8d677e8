"""The report's charts (PNG, matplotlib's Agg backend), readable with many runs.

* `pareto.png`: time to target against cost to target, one marker per configuration (its median; the
  repeats as small dots). Configurations that missed the target are drawn hollow at their whole training
  time and its cost (what reaching the target would at least have taken), and are never on the front.
* `throughput.png`: samples per dollar by configuration, coloured by instance type (bars: median,
  whiskers: the repeats' range).
* `curves.png`: loss and the target metric (without one: the first metric the runs printed) against step
  (or epoch, when no run printed a step) and against wall time (training seconds).

Every configuration has a number (`key`, as in the report's tables); markers carry it, the front's also
their name, placed so that labels never overlap (a label that finds no free place is left out; the
number still identifies the marker in the legend-free tables). Charts show at most `MAX_SHOWN`
configurations where a list would not fit (bars, curves): the recommended ones first.
"""
from __future__ import annotations

import io
import math

from instance_benchmarks.campaigns.report_format import shown_metric
from instance_benchmarks.campaigns.report_stats import chart_point, uses_target

MAX_SHOWN = 40      # configurations drawn in the bar chart and the curves
MAX_LABELS = 40     # labels placed on the Pareto chart (the front's first)
DPI = 100


def _plt():
    import matplotlib  # optional and heavy (about 1 s): only the charts need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # (after choosing the Agg backend)

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, pil_kwargs={"compress_level": 2})  # zlib level 6 is slower for little gain
    _plt().close(fig)
    return buffer.getvalue()


def _colors(report) -> dict[str, tuple]:
    """One colour per instance type (tab10, then tab20)."""
    plt = _plt()
    types = sorted({c["instance_type"] or "?" for c in report.configs})
    palette = plt.get_cmap("tab10" if len(types) <= 10 else "tab20")
    return {t: palette(i % palette.N) for i, t in enumerate(types)}


def _name(config: dict, limit: int = 32) -> str:
    text = f"{config['instance_type']} {config['label']}".strip()
    return text if len(text) <= limit else text[:limit - 1] + "…"


def ranked(report) -> list[dict]:
    """Configurations in the order the report recommends them: front, reached (cheapest first), the rest."""
    def key(c):
        cost = c.get("cost_to_accuracy_usd") if report.target else c.get("cost_usd")
        group = 0 if c.get("on_front") else 1 if c["status"] in ("reached", "complete") else 2 if c["runs"] else 3
        return group, cost if cost is not None else math.inf, c["key"]
    return sorted(report.configs, key=key)


def place_labels(ax, items: list[tuple[float, float, str]], fontsize: float = 7.0) -> int:
    """Annotate (x, y, text) items in order, each at the first of eight positions around its point whose
    box overlaps no label placed so far, no other marker and stays inside the axes; returns how many
    were placed. Boxes are estimated from the text length (no renderer pass: fast with many points)."""
    import numpy as np  # with matplotlib, for the charts only

    fig = ax.figure
    scale = fig.dpi / 72.0
    box = ax.get_window_extent()
    if not items:
        return 0
    pixels = ax.transData.transform(np.array([(x, y) for x, y, _ in items], dtype=float))
    placed: list[tuple[float, float, float, float]] = []
    marker = 4.0 * scale
    count = 0
    for index, ((px, py), (x, y, text)) in enumerate(zip(pixels, items)):
        width, height = len(text) * fontsize * 0.58 * scale, fontsize * 1.25 * scale
        gap = 3.5 * scale
        for dx, dy in ((gap, gap), (gap, -gap - height), (-gap - width, gap), (-gap - width, -gap - height),
                       (-width / 2, 1.8 * gap), (-width / 2, -1.8 * gap - height), (2 * gap, -height / 2),
                       (-2 * gap - width, -height / 2)):
            x0, y0 = px + dx, py + dy
            x1, y1 = x0 + width, y0 + height
            if x0 < box.x0 or x1 > box.x1 or y0 < box.y0 or y1 > box.y1:
                continue
            if any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in placed):
                continue
            others = np.delete(pixels, index, axis=0)
            if len(others) and np.any((others[:, 0] + marker > x0) & (others[:, 0] - marker < x1)
                                      & (others[:, 1] + marker > y0) & (others[:, 1] - marker < y1)):
                continue
            ax.annotate(text, (x, y), xytext=(dx / scale, dy / scale), textcoords="offset points", fontsize=fontsize,
                        ha="left", va="bottom", annotation_clip=False)
            placed.append((x0, y0, x1, y1))
            count += 1
            break
    return count


def pareto_chart(report) -> bytes | None:
    plt = _plt()
    with_target = uses_target(report)
    points = [(c, chart_point(c, with_target)) for c in report.configs]
    points = [(c, p) for c, p in points if p is not None]
    if not points:
        return None
    colors = _colors(report)
    fig, ax = plt.subplots(figsize=(10, 5.5))
    fig.subplots_adjust(left=0.08, right=0.68, bottom=0.12, top=0.92)  # fixed (no layout pass): legend at the right
    rows = {r["run_id"]: r for r in report.rows}
    dots, filled, hollow = ([], [], []), ([], [], []), ([], [], [])  # xs, ys, colours: one scatter call each
    for config, (x, y) in points:
        color = colors[config["instance_type"] or "?"]
        for run_id in config["run_ids"] if config["runs"] > 1 else []:
            row = rows[run_id]
            rx, ry = ((row["time_to_accuracy_s"], row["cost_to_accuracy_usd"]) if with_target and row["status"] == "reached"
                      else (row["train_seconds"], (row["train_seconds"] or 0) * row["usd_per_hour"] / 3600))
            if rx is not None and ry is not None:
                for column, value in zip(dots, (rx, ry, color)):
                    column.append(value)
        target = filled if config["status"] == "reached" or not with_target else hollow
        for column, value in zip(target, (x, y, color)):
            column.append(value)
    if dots[0]:
        ax.scatter(dots[0], dots[1], s=10, c=dots[2], alpha=0.35, linewidths=0, zorder=2)
    if filled[0]:
        ax.scatter(filled[0], filled[1], s=46, c=filled[2], zorder=3, linewidths=1.4)
    if hollow[0]:
        ax.scatter(hollow[0], hollow[1], s=46, facecolors="none", edgecolors=hollow[2], zorder=3, linewidths=1.4)
    front = sorted((p for c, p in points if c.get("on_front")), key=lambda p: p[0])
    if front:
        ax.plot([p[0] for p in front], [p[1] for p in front], color="tab:red", linewidth=1.2, zorder=1,
                label="Pareto front (reached the target)" if with_target else "Pareto front")
    xs, ys = [p[0] for _, p in points], [p[1] for _, p in points]
    for values, setter in ((xs, ax.set_xscale), (ys, ax.set_yscale)):
        positive = [v for v in values if v > 0]
        if positive and len(positive) == len(values) and max(positive) / min(positive) > 30:
            setter("log")
    # legend entries for the marker kinds, and one per instance type (colour)
    ax.scatter([], [], s=46, color="grey", label="reached the target (median)" if with_target else "median of repeats")
    if with_target and any(c["status"] != "reached" for c, _ in points):
        ax.scatter([], [], s=46, facecolors="none", edgecolors="grey",
                   label="missed the target (at its training time\nand cost: a lower bound)")
    if any(c["runs"] > 1 for c in report.configs):
        ax.scatter([], [], s=10, color="grey", alpha=0.5, label="single repeats")
    for itype, color in colors.items():
        ax.scatter([], [], s=46, color=color, label=itype)
    ax.set_xlabel("time to target (s of training)" if with_target else "training time (s)")
    ax.set_ylabel("cost to target ($ at the run's price)" if with_target else "training cost at the run's price ($)")
    title = f"{report.campaign}: time against cost"
    if with_target:
        title += f" to reach {report.target['metric']} {'>=' if report.higher_is_better else '<='} {report.target['value']}"
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.25)
    ax.margins(0.12)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    order = sorted(points, key=lambda cp: (not cp[0].get("on_front"), cp[0]["key"]))[:MAX_LABELS]
    place_labels(ax, [(p[0], p[1], f"{c['key']} {_name(c, 26)}" if c.get("on_front") else str(c["key"]))
                      for c, p in order])
    fig.text(0.01, 0.01, "numbers: configurations as numbered in the report's tables", fontsize=7, color="grey")
    return _png(fig)


def throughput_chart(report) -> bytes | None:
    plt = _plt()
    configs = [c for c in ranked(report) if c.get("samples_per_s") and c.get("usd_per_hour")][:MAX_SHOWN]
    if not configs:
        return None
    configs.sort(key=lambda c: c["samples_per_s"] / c["usd_per_hour"])
    colors = _colors(report)
    height = 1.4 + 0.22 * len(configs)
    fig, ax = plt.subplots(figsize=(9, height))
    fig.subplots_adjust(left=0.36, right=0.97, bottom=0.75 / height, top=1 - 0.45 / height)
    per_dollar = [3600 / c["usd_per_hour"] for c in configs]  # samples per dollar per sample/s
    unit = 1e6 if max(c["samples_per_s"] * k for c, k in zip(configs, per_dollar)) >= 1e6 else 1.0
    values = [c["samples_per_s"] * k / unit for c, k in zip(configs, per_dollar)]
    low = [v - c["samples_per_s_range"][0] * k / unit for v, c, k in zip(values, configs, per_dollar)]
    high = [c["samples_per_s_range"][1] * k / unit - v for v, c, k in zip(values, configs, per_dollar)]
    bars = ax.barh(range(len(configs)), values, color=[colors[c["instance_type"] or "?"] for c in configs],
                   xerr=[low, high] if any(c["runs"] > 1 for c in configs) else None, error_kw={"linewidth": 0.8})
    for bar, config in zip(bars, configs):
        if config["status"] == "missed":
            bar.set_hatch("//")
            bar.set_alpha(0.5)
    ax.set_yticks(range(len(configs)))
    ax.set_yticklabels([f"{c['key']} {_name(c, 36)}" + (" (missed)" if c["status"] == "missed" else "")
                        for c in configs], fontsize=7)
    ax.set_xlabel(f"{'million ' if unit > 1 else ''}samples per dollar (median; whiskers: range of the repeats)")
    shown = f" ({len(configs)} of {len(report.configs)} configurations)" if len(report.configs) > len(configs) else ""
    ax.set_title(f"{report.campaign}: throughput per dollar by instance type{shown}", fontsize=10)
    for itype, color in colors.items():
        ax.barh([0], [0], color=color, label=itype)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(True, axis="x", alpha=0.25)
    return _png(fig)


def _wall(record: dict):
    for key in ("train_t", "train_seconds", "t"):
        if isinstance(record.get(key), (int, float)):
            return record[key]
    return None


def _counter(report) -> str | None:
    """What the left-hand curves are drawn against: `step`, else `epoch`, else nothing (wall time only)."""
    for name in ("step", "epoch"):
        if any(isinstance(h.get(name), (int, float)) for history in report.histories.values() for h in history):
            return name
    return None


def curves_chart(report) -> bytes | None:
    plt = _plt()
    if not any(report.histories.values()):
        return None
    metric = report.primary_metric or shown_metric(report)
    has_loss = any("loss" in h for history in report.histories.values() for h in history)
    quantities = (["loss"] if has_loss else []) + ([metric] if metric and metric != "loss" else [])
    if not quantities:
        return None
    counter = _counter(report)
    xlabels = ([counter] if counter else []) + ["wall time (s of training)"]
    shown = [c for c in ranked(report) if c["runs"]][:MAX_SHOWN]
    cmap = plt.get_cmap("tab20" if len(shown) > 10 else "tab10")
    legend_inches = 0.25 + 0.17 * math.ceil(len(shown) / 3)
    height = 3.2 * len(quantities) + 0.5 + legend_inches
    fig, axes = plt.subplots(len(quantities), len(xlabels), figsize=(11, height), squeeze=False)
    from matplotlib.collections import LineCollection  # charts only (see _plt)
    from matplotlib.lines import Line2D  # charts only (see _plt)

    # one LineCollection per panel (drawing hundreds of Line2D artists is what makes big reports slow)
    segments = {(row, col): ([], []) for row in range(len(quantities)) for col in range(len(xlabels))}
    handles, labels = [], []
    for index, config in enumerate(shown):
        color = cmap(index % cmap.N)
        handles.append(Line2D([], [], color=color, linewidth=1.5))
        labels.append(f"{config['key']} {_name(config, 30)}")
        for repeat, run_id in enumerate(config["run_ids"]):
            history = report.histories.get(run_id) or []
            faded = (*color[:3], 0.9 if repeat == 0 else 0.5)
            for row, quantity in enumerate(quantities):
                points = [h for h in history if isinstance(h.get(quantity), (int, float))]
                by_count = [(h[counter], h[quantity]) for h in points if isinstance(h.get(counter), (int, float))]
                by_wall = [(_wall(h), h[quantity]) for h in points if _wall(h) is not None]
                for col, series in enumerate(([by_count] if counter else []) + [by_wall]):
                    if len(series) > 1:
                        segments[(row, col)][0].append(series)
                        segments[(row, col)][1].append(faded)
    for (row, col), (lines, colors) in segments.items():
        if lines:
            axes[row][col].add_collection(LineCollection(lines, colors=colors, linewidths=1))
            axes[row][col].autoscale_view()
    for row_axes, quantity in zip(axes, quantities):
        for ax, xlabel in zip(row_axes, xlabels):
            ax.set_xlabel(xlabel)
            ax.set_ylabel("training loss" if quantity == "loss" else quantity)
            ax.grid(True, alpha=0.25)
            if report.target and quantity == report.target.get("metric"):
                ax.axhline(report.target["value"], color="grey", linestyle="--", linewidth=0.8)
    more = f" ({len(shown)} of {len(report.configs)} configurations)" if len(report.configs) > len(shown) else ""
    fig.suptitle(f"{report.campaign}: training curves by {' and by '.join(x.split(' (')[0] for x in xlabels)}{more}; "
                 "repeats share a colour",
                 fontsize=10)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=(legend_inches + 0.5) / height, top=1 - 0.45 / height,
                        hspace=0.35, wspace=0.2)
    if labels:
        fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
    return _png(fig)


def render_charts(report) -> dict[str, bytes]:
    charts = {"pareto.png": pareto_chart(report), "throughput.png": throughput_chart(report),
              "curves.png": curves_chart(report)}
    return {name: data for name, data in charts.items() if data is not None}
