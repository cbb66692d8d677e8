"""The embedded default keeps its results: after `campaign run --local`, later commands (new processes,
each with its own moto server) list, download and report them from the local state."""
import csv
import re

from tests.instance_benchmarks.embedded.local_cli import Command, write_campaign

RUNS = re.compile(r"local-keep/(c5-large-lr0p[13]-[0-9a-f]{8})")


def test_results_of_a_local_run_outlive_it(tmp_path):
    state = tmp_path / "state"
    spec = write_campaign(tmp_path, "local-keep")
    code, out, err = Command(state, "campaign", "run", str(spec), "--local", "--out", str(tmp_path / "reports")).finish()
    assert code == 0, (out, err)

    # later commands; readers share the state (each restores it into its own server), so these run at once
    listed = Command(state, "models", "list", "--local", "--plain")
    status = Command(state, "campaign", "status", "local-keep", "--local")
    code, out, err = listed.finish()
    assert code == 0, (out, err)
    refs = sorted(RUNS.findall(out))
    assert len(refs) == 2 and "restored" in err  # both models, from the state (nothing was running)
    download = Command(state, "models", "download", f"local-keep/{refs[0]}", "--local", "--out", str(tmp_path / "model"))
    code, out, err = status.finish()
    assert code == 0, (out, err)
    assert out.count("complete") == 2 and "cost so far $0.00" in out
    code, out, err = download.finish()
    assert code == 0, (out, err)
    assert "SHA-256 verified" in out and (tmp_path / "model" / "model.pt").read_text().startswith("0.")

    # a writer (collect saves what it writes back) has the state to itself
    collected = tmp_path / "collected"
    code, out, err = Command(state, "campaign", "collect", "local-keep", "--local", "--out", str(collected)).finish()
    assert code == 0, (out, err)
    with (collected / "local-keep" / "report.csv").open() as handle:
        assert sorted(row["run_id"] for row in csv.DictReader(handle)) == refs
