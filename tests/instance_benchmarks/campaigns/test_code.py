"""Code identity: `ref` resolved to a commit (the local repository, or `git ls-remote`), run ids that name
the code, tokens in URLs never printed, uncommitted changes named, and the agent checking out the commit."""
import subprocess
from dataclasses import replace

import pytest

from instance_benchmarks.agent.main import SetupError, clone
from instance_benchmarks.campaign_file import parse_spec
from instance_benchmarks.campaigns import code
from instance_benchmarks.core.errors import TrainfleetInputError
from instance_benchmarks.core.validation import redact, validate_repo_url
from tests.instance_benchmarks.conftest import FAKE_COMMIT, commit_change, make_git_repo, spec_dict

GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]


def _mine(tmp_path):
    repo = tmp_path / "mine"
    first = make_git_repo(repo, {"train.py": 'print(\'{"loss": 1}\')\n'})
    return repo, first


def _spec(repo, **changes):
    return parse_spec(spec_dict(workload=None, repo=str(repo), script="train.py", target=None, **changes))


def test_a_local_ref_resolves_to_its_commit_abbreviated_or_not(tmp_path):
    repo, first = _mine(tmp_path)
    assert code.resolve_commit(f"file://{repo}", "main") == first
    assert code.resolve_commit(f"file://{repo}", first[:8]) == first  # the instances fetch the full id


def test_a_misspelt_ref_is_one_line_naming_the_branches(tmp_path):
    repo, _ = _mine(tmp_path)
    with pytest.raises(TrainfleetInputError, match=r"ref 'mian' is not a branch, tag or commit of .*"
                                                   r"branches: main \(did you mean main\?\)") as error:
        code.resolve_commit(f"file://{repo}", "mian")
    assert "\n" not in str(error.value)


def test_a_remote_ref_resolves_as_git_fetch_would_annotated_tags_peeled(tmp_path):
    repo, first = _mine(tmp_path)
    subprocess.run([*GIT, "tag", "-a", "v1", "-m", "release"], cwd=repo, check=True)
    second = commit_change(repo, {"train.py": "print(2)\n"})
    refs = code.remote_refs(f"file://{repo}")  # git ls-remote, as for an https:// URL
    assert code.pick_ref(refs, "v1") == first and code.pick_ref(refs, "main") == second
    assert code.pick_ref(refs, "refs/heads/main") == second and code.pick_ref(refs, "nope") is None


def test_a_remote_ref_that_names_nothing_is_refused_and_a_full_commit_id_is_taken_as_is():
    url = "https://github.com/acme/trainfleet.git"  # listed by tests/conftest.py's fake_remotes
    assert code.resolve_commit(url, "main") == FAKE_COMMIT
    assert code.resolve_commit(url, "a" * 40) == "a" * 40
    with pytest.raises(TrainfleetInputError, match="did you mean main"):
        code.resolve_commit(url, "mainn")
    with pytest.raises(TrainfleetInputError, match="give all 40 characters"):
        code.resolve_commit(url, "abc1234")


def test_an_unreachable_repository_is_one_line_and_never_prints_a_token():
    with pytest.raises(TrainfleetInputError, match=r"^repo https://\*\*\*@127\.0\.0\.1:9/a/b\.git cannot be read") as error:
        code.resolve_commit("https://oauth2:ghp_SECRET@127.0.0.1:9/a/b.git", "main")
    assert "SECRET" not in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(TrainfleetInputError) as error:
        validate_repo_url("https://oauth2:ghp_SECRET@github.com/acme/private.git")
    assert "SECRET" not in str(error.value) and "holds credentials" in str(error.value)
    assert redact("see https://me:tok@host/x and https://host/y") == "see https://***@host/x and https://host/y"
    for url in ("http://me:ghp_SECRET@host/x.git", "https://me:ghp_SEC!RET@github.com/x.git", "ftp://me:ghp_SECRET@h/x"):
        with pytest.raises(TrainfleetInputError) as error:
            parse_spec(spec_dict(repo=url))
        assert "SECRET" not in str(error.value) and "***@" in str(error.value)


def test_run_ids_name_the_code_a_new_commit_or_repo_gives_new_runs(tmp_path):
    repo, first = _mine(tmp_path)
    spec = _spec(repo)
    bound = code.resolved(spec)
    assert bound.commit == first and code.resolved(bound) is bound
    assert [r.run_id for r in spec.runs()] != [r.run_id for r in bound.runs()]  # unbound: the ids of before
    second = commit_change(repo, {"train.py": "print(3)\n"})
    again = code.resolved(spec)
    assert again.commit == second
    assert not {r.run_id for r in again.runs()} & {r.run_id for r in bound.runs()}
    assert [r.run_id for r in code.resolved(spec).runs()] == [r.run_id for r in again.runs()]  # stable
    other, _ = _mine(tmp_path / "fork")
    moved = code.resolved(_spec(other))
    assert not {r.run_id for r in moved.runs()} & {r.run_id for r in again.runs()}
    for change in ({"workdir": "src"}, {"setup": "pip install x"}, {"script": "other.py"}):
        assert replace(again, **change).runs()[0].run_id != again.runs()[0].run_id


def test_uncommitted_changes_are_named_in_a_warning(tmp_path):
    repo, _ = _mine(tmp_path)
    assert code.uncommitted(f"file://{repo}") is None
    (repo / "train.py").write_text("print('edited')\n")
    (repo / "new.py").write_text("x = 1\n")
    note = code.uncommitted(f"file://{repo}")
    assert note.startswith("warning: ") and "will not be run" in note and "train.py" in note and "new.py" in note
    assert code.uncommitted("https://github.com/acme/trainfleet.git") is None


def test_the_agent_checks_out_the_commit_it_was_launched_for_even_after_the_ref_moved(tmp_path, monkeypatch):
    repo, first = _mine(tmp_path)
    second = commit_change(repo, {"train.py": "print('newer')\n"})
    assert clone(f"file://{repo}", "main", tmp_path / "a", first) == first
    assert (tmp_path / "a" / "train.py").read_text() == 'print(\'{"loss": 1}\')\n'
    with pytest.raises(SetupError, match="not 0{40}"):
        clone(f"file://{repo}", "main", tmp_path / "b", "0" * 40)
    # a server that serves commits at a ref only (git's protocol v0 without allowReachableSHA1InWant)
    for key, value in {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "protocol.version", "GIT_CONFIG_VALUE_0": "0"}.items():
        monkeypatch.setenv(key, value)
    assert clone(f"file://{repo}", "main", tmp_path / "c", second) == second
    with pytest.raises(SetupError, match=f"main is now {second}, not {first}"):
        clone(f"file://{repo}", "main", tmp_path / "d", first)
