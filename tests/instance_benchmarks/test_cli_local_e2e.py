"""`campaign launch --local` and `campaign teardown --local` (end to end, each its own process and moto
server over one local state folder): launch runs what it launched inside the command and saves it, so a
later `status --local` sees the runs complete; teardown then finds nothing left to end."""
from __future__ import annotations

from tests.instance_benchmarks.embedded.local_cli import Command, write_campaign


def test_launch_then_status_then_teardown_on_the_embedded_default(tmp_path):
    spec, state = write_campaign(tmp_path, "local-launch"), tmp_path / "state"

    code, out, err = Command(None, "campaign", "launch", str(spec), "--local", "--yes", "--state", str(state)).finish()
    assert code == 0, (out, err)
    assert "launched 2, complete 0" in out and f"local state: {state}" in out and "moto's server at" in out
    assert out.count("instance ended (user data exit 0)") == 2  # both ran inside the command

    code, out, err = Command(None, "campaign", "status", "local-launch", "--local", "--state", str(state)).finish()
    assert code == 0, (out, err)
    assert out.count("complete") == 2 and "restored" in err

    code, out, err = Command(None, "campaign", "teardown", "local-launch", "--local", "--state", str(state)).finish()
    assert code == 0, (out, err)
    assert "ec2: ended 0" in out

    code, out, err = Command(None, "campaign", "teardown", "no-such", "--local", "--state", str(state)).finish()
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: no campaign 'no-such'"), (out, err)
