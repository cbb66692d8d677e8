"""report.html: self-contained, escaped, and rendered by a real browser (headless Chromium from the OS
packages; `.ci/run` installs it). Outside CI a machine without Chromium skips the browser test; under CI
(`CI` set) a missing Chromium fails it."""
from __future__ import annotations

import html
import os
import re
import shutil
import subprocess

import pytest

from instance_benchmarks.campaigns.bench_report import synthetic_campaign
from instance_benchmarks.campaigns.report import assemble_report, render_files
from instance_benchmarks.campaigns.report_html import RUN_COLUMNS

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """24 runs: 12 configurations x 2 repeats, a sixth of them missing the target."""
    records, document, histories = synthetic_campaign(24, repeats=2, campaign="sweep")
    report = assemble_report("sweep", records, document, histories)
    folder = tmp_path_factory.mktemp("report")
    for name, data in render_files(report).items():
        (folder / name).write_bytes(data)
    return report, folder / "report.html"


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed: CI must run the browser test (.ci/run installs it)")
    pytest.skip("chromium is not installed (apt-get install chromium); CI runs this test")


def dump_dom(url: str, profile) -> str:
    """The page's DOM after its scripts ran (a fresh profile; flags that keep Chromium off the network)."""
    done = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000",
                           "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _table_rows(dom: str, table_id: str) -> list[list[str]]:
    table = re.search(rf'<table class="sortable" id="{table_id}">(.*?)</table>', dom, re.S).group(1)
    body = re.search(r"<tbody>(.*?)</tbody>", table, re.S).group(1)
    return [re.findall(r'data-value="([^"]*)"', row) for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]


def test_the_page_is_self_contained_and_opens_with_the_recommendation(rendered):
    report, path = rendered
    page = path.read_text()
    assert re.search(r"<(link|iframe)\b", page) is None and not re.search(r'src="(?!data:image/png;base64,)', page)
    assert page.count('src="data:image/png;base64,') == 3  # pareto, throughput, curves
    first = page.index('<section id="recommendation">')
    assert first < page.index('<section id="runs-section">') and first < page.index('<section id="charts">')
    assert f'<p class="headline">{html.escape(report.recommendation["headline"])}</p>' in page
    assert "describe_spot_price_history (us-east-1a) + 30 GiB gp3" in page and "2025-06-01T12:00:00+00:00" in page
    assert "campaign: sweep" in page and "batch_size:" in page  # the campaign spec as launched
    assert 'id="costs"' in page and "interrupted attempts ($)" in page and "EBS ($)" in page


def test_values_from_the_bucket_are_escaped():
    records, document, histories = synthetic_campaign(2, repeats=1, campaign="sweep")
    records[0]["launch"]["hyperparameters"]["batch_size"] = "<script>alert(1)</script>"
    records[0]["result"]["price"] = {**records[0]["result"]["price"], "source": '"><img src=x onerror=alert(1)>'}
    page = render_files(assemble_report("sweep", records, document, histories))["report.html"].decode()
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page


def test_chromium_renders_the_table_and_charts_and_sorts(rendered, tmp_path):
    report, path = rendered
    dom = dump_dom(path.as_uri(), tmp_path / "profile")
    rows = _table_rows(dom, "runs")
    assert sorted(row[0] for row in rows) == sorted(r["run_id"] for r in report.rows)  # all 24 runs
    rendered_charts = re.findall(r'<figure id="chart-(\w+)" data-rendered="(\w+)"', dom)
    assert sorted(rendered_charts) == [("curves", "yes"), ("pareto", "yes"), ("throughput", "yes")]  # PNGs decoded
    # the page's own sort (the heading's click handler), applied from the address: samples/s, descending
    column = [key for key, _ in RUN_COLUMNS].index("samples_per_s")
    dom = dump_dom(path.as_uri() + "#sort=runs.-samples_per_s", tmp_path / "profile2")
    shown = [float(row[column]) for row in _table_rows(dom, "runs")]
    assert shown == sorted((r["samples_per_s"] for r in report.rows), reverse=True)
    assert re.search(r'<th data-key="samples_per_s"[^>]*aria-sort="descending"', dom)
