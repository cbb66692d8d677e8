"""`report.html`: one self-contained page (no network, no external file): the recommendation first,
sortable tables (click a heading; `report.html#sort=runs.-samples_per_s` opens sorted), the charts
embedded as base64 PNG, what each run was billed for, every price with its source and date, and the
campaign spec as launched. Every value from the bucket is HTML-escaped.
"""
from __future__ import annotations

import base64
import html
import json

import yaml

from instance_benchmarks.campaigns.report_format import (
    COST_COLUMNS, EARLIER_HEADING, METRIC_CONFIG_COLUMNS, METRIC_RUN_COLUMNS, METRIC_SOURCES, METRICS_NOTE,
    PREDICTION_COLUMNS, PRICE_COLUMNS, earlier_line, format_value, metric_columns, price_rows,
)
from instance_benchmarks.campaigns.report_stats import CONFIG_COLUMNS, SCALING_NOTE, config_cells, recommendation_lines

RUN_COLUMNS = [("run_id", "run"), ("config_key", "#"), ("instance_type", "instance"), ("label", "hyperparameters"),
               ("status", "status"), ("market", "market"), ("usd_per_hour", "$/h"), ("samples_per_s", "samples/s"),
               ("step_time_cv", "step time CV"), ("usd_per_1m_samples", "$/1M samples"), ("time_to_accuracy_s", "time to target (s)"),
               ("cost_to_accuracy_usd", "cost to target ($)"), ("final_metric", "final metric"), ("mfu", "MFU"),
               ("sec_per_step", "sec/step"), ("usd_per_epoch", "$/epoch"), ("cost_usd", "run cost ($)"),
               ("attempts", "attempts"), ("world_size", "processes"),
               ("samples_per_s_per_device", "samples/s per GPU"), ("scaling_efficiency", "scaling efficiency"),
               ("measured_on", "measured on"), ("host_other_cpus", "other processes (CPUs)"), ("code", "code")]
CHART_CAPTIONS = {
    "pareto.png": "Time against cost to reach the target, one marker per configuration (median; small dots: "
                  "repeats). Hollow: missed the target, drawn at its whole training time and cost; never on the front.",
    "throughput.png": "Samples per dollar by configuration, coloured by instance type; hatched: missed the target.",
    "curves.png": "Training curves against step (left) and wall time (right); repeats share a colour.",
}
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem auto;max-width:1200px;padding:0 1rem;color:#222}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
#recommendation{background:#f3f8f2;border:1px solid #bcd9b5;border-radius:6px;padding:.6rem 1rem}
#recommendation .headline{font-size:1.1rem;font-weight:600;margin:.3rem 0}li.sub{list-style:circle;margin-left:1.5rem}
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:12px;white-space:nowrap}
th,td{border-bottom:1px solid #e3e3e3;padding:3px 8px;text-align:right}th{background:#f6f6f6;position:sticky;top:0}
td.text,th.text{text-align:left}table.sortable th{cursor:pointer;user-select:none}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
tr.missed td{color:#8a5a00}tr.failed td{color:#a00}.noisy{color:#a00;font-weight:600}
figure{margin:1rem 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:12px;color:#555}
figure[data-rendered=no]::after{content:"this chart could not be displayed";color:#a00}
pre{background:#f6f6f6;padding:.6rem;overflow-x:auto;font-size:12px}.note{color:#555;font-size:12px}
"""
SCRIPT = """
(function () {
  function cellValue(row, index) {
    var cell = row.cells[index];
    if (!cell) return null;
    var raw = cell.getAttribute('data-value');
    if (raw === null || raw === '') return null;
    var number = Number(raw);
    return isNaN(number) ? raw.toLowerCase() : number;
  }
  function sortTable(table, index, descending) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a, index), y = cellValue(b, index);
      if (x === null && y === null) return 0;
      if (x === null) return 1;            /* missing values last, either way */
      if (y === null) return -1;
      if (typeof x !== typeof y) { x = String(x); y = String(y); }
      var order = x < y ? -1 : x > y ? 1 : 0;
      return descending ? -order : order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      if (i === index) th.setAttribute('aria-sort', descending ? 'descending' : 'ascending');
      else th.removeAttribute('aria-sort');
    });
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      th.title = 'sort';
      th.addEventListener('click', function () {
        sortTable(table, index, th.getAttribute('aria-sort') === 'ascending');
      });
    });
  });
  /* #sort=<table id>.<column key>, a leading '-' on the key for descending: e.g. #sort=runs.-samples_per_s */
  var match = /sort=([\\w-]+)\\.(-?)([\\w-]+)/.exec(window.location.hash);
  if (match) {
    var table = document.getElementById(match[1]);
    if (table) {
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
        if (th.getAttribute('data-key') === match[3]) sortTable(table, index, match[2] === '-');
      });
    }
  }
  document.querySelectorAll('figure img').forEach(function (img) {
    function mark() { img.parentNode.setAttribute('data-rendered', img.naturalWidth > 0 ? 'yes' : 'no'); }
    if (img.complete) mark(); else { img.addEventListener('load', mark); img.addEventListener('error', mark); }
  });
})();
"""


def _e(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (int, float)):  # digits, '.', '-', 'e', ',': nothing to escape
        return str(value)
    return html.escape(str(value), quote=True)


def _table(table_id: str, rows: list[dict], columns: list[tuple[str, str]], *, text: set[str],
           row_class=None) -> str:
    head = "".join(f'<th data-key="{_e(key)}" class="{"text" if key in text else "num"}">{_e(title)}</th>'
                   for key, title in columns)
    body = []
    for row in rows:
        cells = []
        for key, _ in columns:
            value = row.get(key)
            raw = row.get(f"{key}__sort", value)
            sort = "" if raw is None else raw if isinstance(raw, str) else repr(float(raw)) \
                if isinstance(raw, (int, float)) and not isinstance(raw, bool) else str(raw)
            shown = value if isinstance(value, str) else format_value(value)
            css = "text" if key in text else "num"
            if isinstance(value, str) and value.endswith("!)"):
                css += " noisy"
            cells.append(f'<td class="{css}" data-value="{_e(sort)}">{_e(shown)}</td>')
        klass = f' class="{_e(row_class(row))}"' if row_class and row_class(row) else ""
        body.append(f"<tr{klass}>{''.join(cells)}</tr>")
    return (f'<div class="scroll"><table class="sortable" id="{_e(table_id)}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _spec_text(specs: list[dict]) -> str:
    if not specs:
        return "(campaign.json holds no spec)"
    try:
        return "\n---\n".join(yaml.safe_dump(spec, sort_keys=False, default_flow_style=None, width=100) for spec in specs)
    except yaml.YAMLError:
        return json.dumps(specs, indent=2, default=str)


def to_html(report, images: dict[str, bytes]) -> str:
    lines = recommendation_lines(report)
    keys = {c["config_id"]: c["key"] for c in report.configs}
    runs = [{**row, "config_key": keys.get(row["config_id"])} for row in report.rows]
    parts = [f"<h1>{_e(report.campaign)}</h1>",
             '<section id="recommendation"><h2>Recommendation</h2>',
             f'<p class="headline">{_e(report.recommendation.get("headline", ""))}</p><ul>',
             *(f'<li{" class=sub" if line.startswith(" ") else ""}>{_e(line.strip())}</li>' for line in lines[1:]),
             "</ul>"]
    if report.target:
        parts.append(f'<p class="note">Target: {_e(report.target.get("metric"))} '
                     f'{">=" if report.higher_is_better else "<="} {_e(report.target.get("value"))}. Only '
                     "configurations whose every complete run reached it are recommended.</p>")
    parts.append("</section>")
    if any(c["runs"] > 1 or c["failed"] for c in report.configs):
        cells = []
        for config in report.configs:
            cell = config_cells(config)
            for name in ("samples_per_s", "time_to_accuracy_s", "cost_to_accuracy_usd", "usd_per_1m_samples",
                         "final_metric"):
                cell[f"{name}__sort"] = config.get(name)
            cells.append(cell)
        parts += ['<section id="configurations-section"><h2>Configurations</h2>',
                  '<p class="note">Median of each configuration\'s complete runs; CV = coefficient of variation '
                  "between repeats, marked ! above 5 %.</p>",
                  _table("configurations", cells, CONFIG_COLUMNS,
                         text={"config_id", "instance_type", "label", "runs_text", "status", "front"},
                         row_class=lambda r: r["status"] if r["status"] in ("missed", "failed") else ""),
                  "</section>"]
    parts += _metrics_section(report)
    parts += ['<section id="runs-section"><h2>Runs</h2>',
              _table("runs", runs, RUN_COLUMNS, text={"run_id", "instance_type", "label", "status", "market",
                                                      "measured_on", "code"},
                     row_class=lambda r: r["status"] if r["status"] == "missed" else ""),
              *([f'<p class="note" id="scaling-note">{_e(SCALING_NOTE)}</p>']
                if any(r.get("scaling_efficiency") is not None for r in report.rows) else []),
              "</section>"]
    missed = [r for r in report.rows if r["status"] == "missed"]
    silent = [r for r in report.rows if r["status"] == "no metric"]
    if missed or silent or report.incomplete:
        parts.append('<section id="not-recommended"><h2>Not recommended</h2><ul>')
        parts += [f"<li>missed the target: <code>{_e(r['run_id'])}</code> {_e(r['instance_type'])} {_e(r['label'])}, "
                  f"final {_e(format_value(r['final_metric']))}</li>" for r in missed]
        parts += [f"<li>never printed the target metric {_e((report.target or {}).get('metric'))}: "
                  f"<code>{_e(r['run_id'])}</code> {_e(r['instance_type'])} {_e(r['label'])}. {_e(METRIC_SOURCES)}</li>"
                  for r in silent]
        parts += [f"<li>incomplete (no result.json): <code>{_e(r['run_id'])}</code> {_e(r['label'])}, "
                  f"{_e(r['attempts'])} attempt(s), last: {_e(r['last_outcome'])}</li>" for r in report.incomplete]
        parts.append("</ul></section>")
    if report.earlier:
        parts.append(f'<section id="earlier-code"><h2>{_e(EARLIER_HEADING.format(n=len(report.earlier)))}</h2><ul>')
        parts += [f"<li>{_e(earlier_line(r))}</li>" for r in report.earlier]
        parts.append("</ul></section>")
    parts.append('<section id="charts"><h2>Charts</h2>')
    for name in ("pareto.png", "throughput.png", "curves.png"):
        if name in images:
            data = base64.b64encode(images[name]).decode()
            parts.append(f'<figure id="chart-{name.split(".")[0]}"><img alt="{_e(name)}" '
                         f'src="data:image/png;base64,{data}"><figcaption>{_e(CHART_CAPTIONS[name])}</figcaption></figure>')
    parts.append("</section>")
    parts += ['<section id="costs-section"><h2>What each run was billed for</h2>',
              '<p class="note">Idle = billed seconds minus boot, setup and training (the 60 s minimum, checkpoint '
              "pushes, uploads); EBS = the root volume's share of the price; interrupted attempts = what attempts "
              "that did not complete cost.</p>",
              _table("costs", report.rows, COST_COLUMNS, text={"run_id", "instance_type"}), "</section>"]
    predicted = sorted((r for r in report.rows if r.get("est_usd") is not None), key=lambda r: r["est_usd"])
    if predicted:
        parts += ['<section id="predicted-section"><h2>Predicted full job (from benchmark slices)</h2>',
                  _table("predicted", predicted, PREDICTION_COLUMNS, text={"run_id", "label", "instance_type", "est_range"}),
                  "</section>"]
    parts += ['<section id="prices-section"><h2>Prices</h2>',
              f'<p class="note">Prices as recorded at launch (catalog as of {_e(report.catalog_as_of or "-")}); '
              "each includes the root volume's EBS share.</p>",
              _table("prices", price_rows(report), PRICE_COLUMNS, text={"instance_type", "market", "source", "quoted_at"}),
              "</section>",
              '<section id="spec"><h2>Campaign spec</h2>', f"<pre>{_e(_spec_text(report.specs))}</pre></section>"]
    if any(r.get("stand_in") for r in report.rows):
        parts.append('<p class="note">Runs measured on a stand-in host (the embedded default: this machine) did '
                     "not run on the type named; their cost applies that type's recorded price.</p>")
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{_e(report.campaign)}: "
            f"{_e(report.recommendation.get('headline', 'report'))}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(parts) + f"\n<script>{SCRIPT}</script>\n</body></html>\n")


def _metrics_section(report) -> list[str]:
    """The user's metrics, last and best: per configuration (median of the repeats) when repeated, and per run."""
    if not report.metrics:
        return []
    columns = metric_columns(report)
    text = {"run_id", "instance_type", "label", "runs_text"}
    parts = ['<section id="metrics-section"><h2>Metrics: last and best</h2>', f'<p class="note">{_e(METRICS_NOTE)}</p>']
    if any(c["runs"] > 1 for c in report.configs):
        cells = []
        for config in (c for c in report.configs if c["runs"]):
            cell = config_cells(config, tuple(key for key, _ in columns))
            cells.append({**cell, **{f"{key}__sort": config.get(key) for key, _ in columns}})
        parts += ["<h3>Per configuration (median of the repeats)</h3>",
                  _table("metric-configurations", cells, METRIC_CONFIG_COLUMNS + columns, text=text), "<h3>Per run</h3>"]
    return parts + [_table("metrics", report.rows, METRIC_RUN_COLUMNS + columns, text=text), "</section>"]

