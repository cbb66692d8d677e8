"""The embedded default keeps its results in one folder, whatever the current directory: after `campaign run
--local` from inside the user's repository, later commands (new processes, each with its own moto server, run
from elsewhere) list, download, show and report them from the local state; none writes where it runs."""
import csv
import re
import subprocess

from tests.instance_benchmarks.embedded.local_cli import Command, write_campaign

RUNS = re.compile(r"local-keep/(c5-large-lr0p[13]-[0-9a-f]{8})")


def test_results_of_a_local_run_outlive_it_and_are_found_from_any_directory(tmp_path):
    spec = write_campaign(tmp_path, "local-keep")
    repo, elsewhere = tmp_path / "repo", tmp_path / "elsewhere"
    elsewhere.mkdir()
    # no TRAINFLEET_STATE: the XDG state directory, under a home of the test's own
    where = {"HOME": str(tmp_path / "home"), "XDG_STATE_HOME": str(tmp_path / "xdg")}
    state = tmp_path / "xdg" / "trainfleet"

    def command(*args, cwd=elsewhere):
        return Command(None, *args, cwd=cwd, env=where)

    code, out, err = command("campaign", "run", str(spec), "--local", cwd=repo).finish()  # from the user's repository
    assert code == 0, (out, err)
    assert f"local state: {state}" in out and (state / "reports" / "local-keep" / "report.csv").is_file()
    untouched = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=repo, capture_output=True, text=True)
    assert untouched.stdout == ""  # no .trainfleet/, no reports/ in the repository

    # later commands, from another directory; readers share the state (each restores it into its own server)
    listed = command("models", "list", "--local", "--plain")
    status = command("campaign", "status", "local-keep", "--local")
    code, out, err = listed.finish()
    assert code == 0, (out, err)
    refs = sorted(RUNS.findall(out))
    assert len(refs) == 2 and "restored" in err and f"local state: {state}" in err  # both models, from the state
    download = command("models", "download", f"local-keep/{refs[0]}", "--local", "--out", str(tmp_path / "model"))
    code, out, err = status.finish()
    assert code == 0, (out, err)
    assert out.count("complete") == 2 and "cost so far $0.00" in out
    code, out, err = download.finish()
    assert code == 0, (out, err)
    assert "SHA-256 verified" in out and (tmp_path / "model" / "model.pt").read_text().startswith("0.")
    logs = command("campaign", "logs", "local-keep", refs[0], "--local", "--file", "script")
    info = command("info", "--local")
    code, out, err = logs.finish()
    assert code == 0 and '"step": 3' in out, (out, err)
    code, out, err = info.finish()
    assert code == 0 and re.search(r"campaigns\s+1: local-keep", out) and re.search(rf"local state\s+{re.escape(str(state))}\n", out), (out, err)

    # a writer (collect saves what it writes back) has the state to itself; its report goes to the state too
    code, out, err = command("campaign", "collect", "local-keep", "--local").finish()
    assert code == 0, (out, err)
    with (state / "reports" / "local-keep" / "report.csv").open() as handle:
        assert sorted(row["run_id"] for row in csv.DictReader(handle)) == refs
    assert list(elsewhere.iterdir()) == []  # nothing written where the commands ran
