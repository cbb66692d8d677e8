"""Killing `trainfleet campaign run --local`: SIGINT stops and tears down, SIGKILL loses nothing that had
finished, and neither leaves moto's server or an instance's processes behind."""
import re
import signal

from instance_benchmarks.core.contract import run_prefix
from tests.instance_benchmarks.embedded.local_cli import (
    ENDED, EXECUTING, SERVER, Command, alive, listening, processes_mentioning, saved_json, wait_until, write_campaign,
)

HELD = re.compile(EXECUTING.pattern.replace(r"(\S+) on", r"(c5-large-lr0p3\S*) on"))  # lr 0.3 waits for the file


def _runs(lines: str, pattern) -> list:
    return [m for m in map(pattern.search, lines.splitlines()) if m]


def test_sigint_stops_tears_down_and_leaves_nothing_running(tmp_path):
    hold = tmp_path / "hold"
    hold.write_text("the second run waits while this file exists")
    state = tmp_path / "state"
    run = Command(state, "campaign", "run", str(write_campaign(tmp_path, "sig-int", hold)), "--local",
                  "--out", str(tmp_path / "reports"))
    port, server_pid = map(int, run.wait_for(SERVER).groups())
    first = run.wait_for(ENDED)  # the first run completed; then the second (held) one boots
    held = run.wait_for(HELD)
    sandbox = held.group(3)
    wait_until(lambda: processes_mentioning(sandbox), what="the held instance's processes")

    run.process.send_signal(signal.SIGINT)
    code, out, err = run.finish(timeout=180)

    assert code == 130 and err.strip().splitlines()[-1] == "error: interrupted", (out, err)
    assert "interrupted: tearing down everything the campaign started" in out
    assert "0 left running" in out  # nothing of the campaign live in moto when it stopped
    assert not alive(server_pid) and not listening(port)  # moto's server went with the command
    assert processes_mentioning(sandbox) == []  # user data, agent and training script all ended
    # the state was saved: the completed run is kept, the interrupted attempt settled (not "launched") as the
    # user's (torn down, billed from its boot here), which does not count against max_attempts (2)
    campaign = "sig-int"
    assert saved_json(state, f"{run_prefix(campaign, first.group(2))}/result.json") is not None
    record = saved_json(state, f"{run_prefix(campaign, held.group(2))}/launch.json")
    assert [a["outcome"] for a in record["attempts"]] == ["torn down"] and record["attempts"][0]["cost_usd"] > 0
    assert saved_json(state, f"{run_prefix(campaign, held.group(2))}/result.json") is None

    # a second Ctrl-C while the held run runs again, then a rerun: every run completes
    spec = write_campaign(tmp_path, campaign, hold)
    second = Command(state, "campaign", "run", str(spec), "--local", "--out", str(tmp_path / "reports"))
    second.wait_for(HELD)
    second.process.send_signal(signal.SIGINT)
    assert second.finish(timeout=180)[0] == 130
    hold.unlink()
    code, out, err = Command(state, "campaign", "run", str(spec), "--local", "--out", str(tmp_path / "reports")).finish(
        timeout=300)
    assert code == 0 and "summary: 2/2 complete" in out, (out, err)
    record = saved_json(state, f"{run_prefix(campaign, held.group(2))}/launch.json")
    assert [a["outcome"] for a in record["attempts"]] == ["torn down", "torn down", "completed"]


def test_sigkill_orphans_nothing_and_a_rerun_resumes(tmp_path):
    hold = tmp_path / "hold"
    hold.write_text("the second run waits while this file exists")
    state, campaign = tmp_path / "state", "sig-kill"
    spec = write_campaign(tmp_path, campaign, hold)
    run = Command(state, "campaign", "run", str(spec), "--local", "--out", str(tmp_path / "reports"))
    port, server_pid = map(int, run.wait_for(SERVER).groups())
    done = run.wait_for(ENDED)  # logged after the state was saved
    assert done.group(3) == "0"
    run.process.send_signal(signal.SIGKILL)
    run.finish(timeout=60)

    # the orphans die with their parent: moto's server (parent-death signal) and any instance (its guard)
    wait_until(lambda: not alive(server_pid) and not listening(port), what="moto's server to die with its parent")
    wait_until(lambda: not processes_mentioning(f"--parent {run.process.pid} "), what="the instance guards to end")
    completed = saved_json(state, f"{run_prefix(campaign, done.group(2))}/result.json")
    assert completed is not None  # survived the SIGKILL

    hold.unlink()
    again = Command(state, "campaign", "run", str(spec), "--local", "--out", str(tmp_path / "reports"))
    code, out, err = again.finish(timeout=300)
    assert code == 0, (out, err)
    assert f"{campaign} (ec2): 1 launched" in out  # the completed run was kept, not run again
    rerun = [m.group(2) for m in _runs(out, EXECUTING)]
    assert len(rerun) == 1 and rerun[0] != done.group(2) and rerun[0].startswith("c5-large-lr0p3")
    assert saved_json(state, f"{run_prefix(campaign, done.group(2))}/result.json") == completed
    assert len(saved_json(state, f"{run_prefix(campaign, done.group(2))}/launch.json")["attempts"]) == 1
    attempts = saved_json(state, f"{run_prefix(campaign, rerun[0])}/launch.json")["attempts"]
    assert [a["outcome"] for a in attempts] == ["lost", "completed"]  # the attempt the kill cut short, then a new one
    assert "summary: 2/2 complete" in out


def test_detach_is_refused_on_the_embedded_default_before_anything_starts(tmp_path):
    code, out, err = Command(tmp_path / "state", "campaign", "run", str(write_campaign(tmp_path, "no-detach")),
                             "--local", "--detach").finish(timeout=60)
    assert code == 2 and err.startswith("error: --detach needs AWS") and len(err.strip().splitlines()) == 1
    assert "moto's server" not in out and not (tmp_path / "state").exists()
