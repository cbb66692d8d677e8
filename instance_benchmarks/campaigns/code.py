"""Code identity: the commit a campaign's `ref` resolves to, found before anything launches.

A run is bound to its code (`CampaignSpec.code()`: repo URL, resolved commit, workdir, script or setup/run
text) and to its hyperparameters: both go into its run id, so a new commit (or another `repo`) is measured
as new runs and the earlier ones are kept, shown apart in the report as earlier code.

`ref` is resolved with `git ls-remote` for a remote repository (the user's own git credentials, never a
prompt) and in the repository itself for a local one (a path or file:// URL). Git runs with the user's
configuration; URLs in messages have any user name or token replaced by `***`.
"""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from pathlib import Path

from instance_benchmarks.core.errors import TrainfleetInputError, did_you_mean, known_names
from instance_benchmarks.core.validation import redact

GIT_TIMEOUT_S = 60.0
_SHA = re.compile(r"^[0-9a-f]{40}$")
_HEX = re.compile(r"^[0-9a-f]{7,39}$")


def local_path(repo: str) -> Path | None:
    """The folder of a local repository (file:///path), or None for a remote URL."""
    return Path(repo[len("file://"):]) if repo.startswith("file://") else None


def _git(args: list[str], *, cwd: Path | None = None, what: str) -> str:
    """git's standard output; a failure (or no git, or GIT_TIMEOUT_S passed) is one input-error line."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}  # credential helpers answer; nothing prompts
    try:
        done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=GIT_TIMEOUT_S)
    except FileNotFoundError:
        raise TrainfleetInputError(f"{what}: git is not installed") from None
    except subprocess.TimeoutExpired:
        raise TrainfleetInputError(f"{what}: git gave no answer in {GIT_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        reason = next((line for line in lines if line.startswith("fatal:")), lines[0] if lines else "")
        raise TrainfleetInputError(redact(f"{what}: {reason}" if reason else what))
    return done.stdout


def remote_refs(repo: str) -> dict[str, str]:
    """{ref name: commit} of a repository as `git ls-remote` lists it (annotated tags peeled)."""
    text = _git(["ls-remote", "--", repo], what=f"repo {redact(repo)} cannot be read")
    refs: dict[str, str] = {}
    for line in text.splitlines():
        sha, _, name = line.partition("\t")
        if name.endswith("^{}"):
            refs[name[:-3]] = sha  # the commit an annotated tag points at, over the tag object
        else:
            refs.setdefault(name, sha)
    return refs


def pick_ref(refs: dict[str, str], ref: str) -> str | None:
    """The commit `git fetch origin REF` would get: REF itself, then refs/REF, refs/tags/REF,
    refs/heads/REF, refs/remotes/REF (git's rules for a short name)."""
    for name in (ref, f"refs/{ref}", f"refs/tags/{ref}", f"refs/heads/{ref}", f"refs/remotes/{ref}",
                 f"refs/remotes/{ref}/HEAD"):
        if name in refs:
            return refs[name]
    return None


def resolve_commit(repo: str, ref: str) -> str:
    """The 40-hex commit `ref` names in `repo` now; a ref that names nothing is one input-error line."""
    path = local_path(repo)
    if path is not None:
        try:  # a local repository also resolves abbreviated commits (the instances fetch the full id)
            return _git(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"], cwd=path,
                        what="rev-parse").strip()
        except TrainfleetInputError:
            refs, hint = remote_refs(repo), ""
    else:
        refs = remote_refs(repo)
        found = pick_ref(refs, ref)
        if found:
            return found
        if _SHA.fullmatch(ref):  # a full commit id no ref names: instances fetch it by id where the server allows
            return ref           # it (uploadpack.allowReachableSHA1InWant; GitHub does); it is not checked here
        hint = " (an abbreviated commit cannot be fetched: give all 40 characters)" if _HEX.fullmatch(ref) else ""
    heads = sorted(name[len("refs/heads/"):] for name in refs if name.startswith("refs/heads/"))
    raise TrainfleetInputError(f"ref {ref!r} is not a branch, tag or commit of {redact(repo)}{hint}; branches: "
                               f"{known_names(heads)}{did_you_mean(ref, heads)}")


def resolved(spec):
    """`spec` bound to the commit its ref names now (unchanged when already bound)."""
    if spec.commit is not None:
        return spec
    return dataclasses.replace(spec, commit=resolve_commit(spec.repo, spec.ref))


def uncommitted(repo: str, limit: int = 5) -> str | None:
    """For a local repository with changes git has not committed (edits, new files not ignored): a warning
    naming what will not be run; else None."""
    path = local_path(repo)
    if path is None:
        return None
    lines = [line[3:] for line in _git(["status", "--porcelain", "--untracked-files=normal"], cwd=path,
                                       what=f"git status in {path}").splitlines() if line.strip()]
    if not lines:
        return None
    shown = ", ".join(lines[:limit]) + (f" and {len(lines) - limit} more" if len(lines) > limit else "")
    return (f"warning: {path} has uncommitted changes that will not be run (runs use the commit only): {shown}; "
            "commit them to measure them")


def exists_at(repo: str, commit: str, path: str, kind: str) -> bool:
    """Whether a local repository holds `path` (kind "blob": a file, "tree": a folder) at `commit`."""
    try:
        found = _git(["cat-file", "-t", f"{commit}:{path}"], cwd=local_path(repo), what="git cat-file").strip()
    except TrainfleetInputError:
        return False
    return found == kind


def mentions(repo: str, commit: str, names: list[str]) -> set[str]:
    """Which of `names` a local repository's text files at `commit` hold as a quoted key ("name" or 'name'):
    how a script's JSON metric lines name what they carry."""
    if not names:
        return set()
    patterns = [arg for name in names for arg in ("-e", f'"{name}"', "-e", f"'{name}'")]
    try:
        text = _git(["grep", "-I", "-F", "-h", "-o", *patterns, commit, "--"], cwd=local_path(repo), what="git grep")
    except TrainfleetInputError:  # exit 1: nothing found
        return set()
    return {line.strip("\"'") for line in text.splitlines()} & set(names)
