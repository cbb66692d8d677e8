"""Validation of values that end up on an instance's command line: repo URLs, git refs, script paths, ids.

Every value is also shell-quoted by the user-data builder; validation is the first of two defences and
gives the user a clear one-line error before anything is synthesized or launched.
"""
from __future__ import annotations

import re
from pathlib import PurePosixPath

from instance_benchmarks.core.errors import TrainfleetInputError

_SAFE_URL_CHARS = re.compile(r"^[A-Za-z0-9._~/:@%+=-]+$")
_HTTPS = re.compile(r"^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?/[A-Za-z0-9._~/%+-]+$")
_SSH = re.compile(r"^ssh://[A-Za-z0-9._-]+@[A-Za-z0-9.-]+(:[0-9]{1,5})?/[A-Za-z0-9._~/%+-]+$")
_SCP = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[A-Za-z0-9._~%+-][A-Za-z0-9._~/%+-]*$")
_LOCAL_PATH = re.compile(r"^/[A-Za-z0-9._~/+@-]*$")
_REF = re.compile(r"^[A-Za-z0-9._/-]+$")
_SCRIPT_PART = re.compile(r"^[A-Za-z0-9._-]+$")
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_SNIPPET = re.compile(r"^[^\x00-\x08\x0b-\x1f\x7f]*$")  # shell text: lines and tabs, no other control character
_ARG = re.compile(r"^[A-Za-z0-9._=,:/+@%-]*$")


_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")  # https://user:token@host/... -> https://***@host/...


def redact(text: str) -> str:
    """`text` with the user name and password (a token) of any URL in it replaced by `***`: never printed."""
    return _USERINFO.sub("***@", str(text))


def validate_repo_url(url: str) -> str:
    """Accept https://host/path only: instances clone without keys, so ssh URLs cannot work there."""
    if not isinstance(url, str) or not url:
        raise TrainfleetInputError("repo URL is empty")
    if url.startswith(("https://", "http://")) and _USERINFO.search(url):  # first: the messages below print the URL
        raise TrainfleetInputError(f"repo URL {redact(url)!r} holds credentials: give it without them (they would be "
                                   "stored with every run, and instances clone without credentials)")
    if not _SAFE_URL_CHARS.fullmatch(url):
        raise TrainfleetInputError(f"repo URL {url!r} contains characters that are not allowed in a git URL")
    if url.startswith("-"):
        raise TrainfleetInputError(f"repo URL {url!r} must not start with '-'")
    if "/../" in url or url.endswith("/.."):
        raise TrainfleetInputError(f"repo URL {url!r} must not contain '..' path segments")
    if _SSH.fullmatch(url) or _SCP.fullmatch(url):
        raise TrainfleetInputError(
            f"repo URL {url!r} uses ssh, but instances have no ssh key: use the repository's https:// URL")
    if not _HTTPS.fullmatch(url):
        raise TrainfleetInputError(f"repo URL {url!r} must be an https:// URL; other schemes are refused")
    return url


def validate_local_repo(url: str) -> str:
    """A `file:///absolute/path` of a local git repository (the embedded default clones it)."""
    path = url[len("file://"):] if isinstance(url, str) and url.startswith("file://") else None
    if path is None or not _LOCAL_PATH.fullmatch(path) or "/../" in path or path.endswith("/.."):
        raise TrainfleetInputError(f"local repo {url!r} must be file:///absolute/path with no unusual characters")
    return url


def require_remote_repo(url: str) -> str:
    """What an instance in AWS can clone: an https URL, never a path on this machine."""
    if isinstance(url, str) and url.startswith("file://"):
        raise TrainfleetInputError(
            f"repo {url} is a local repository: only the embedded default (--local) can clone it; "
            "on AWS push it and give its https:// URL")
    return validate_repo_url(url)


def validate_git_ref(ref: str) -> str:
    """A branch, tag or commit: git's ref-name rules, restricted to a shell-safe alphabet."""
    if not isinstance(ref, str) or not ref:
        raise TrainfleetInputError("git ref is empty")
    if (
        not _REF.fullmatch(ref)
        or ref.startswith(("-", "/", "."))
        or ref.endswith(("/", ".", ".lock"))
        or ".." in ref
        or "//" in ref
    ):
        raise TrainfleetInputError(f"git ref {ref!r} is not a valid branch, tag or commit name")
    return ref


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
S3_KEY_MAX = 1024  # an S3 key's limit


def download_path(name, out_dir, *, what: str, refused: str = "refused",
                  error: type[TrainfleetInputError] = TrainfleetInputError) -> PurePosixPath:
    """A name read from S3 (an artifact name in result.json, a key below a job's prefix) as a relative path
    that stays under `out_dir`, or `error`: text of at most 1,024 characters, no backslash, NUL or control
    character, not absolute, no empty, `.` or `..` part. `what` names it, with `{name}` where it goes."""
    shown = what.format(name=repr(name)[:80])
    if not isinstance(name, str) or not name or len(name) > S3_KEY_MAX:
        raise error(f"{shown} is not a file name; {refused}")
    if _CONTROL.search(name) or "\\" in name:
        raise error(f"{shown} holds control characters or '\\'; {refused}")
    if name.startswith("/") or PurePosixPath(name).is_absolute():
        raise error(f"{shown} is an absolute path; {refused}")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise error(f"{shown} would be written outside {out_dir}; {refused}")
    return PurePosixPath(name)


def _repo_path(path: str, what: str) -> PurePosixPath:
    """A relative path inside the repository: never absolute, never '..', a shell-safe alphabet."""
    if not isinstance(path, str) or not path:
        raise TrainfleetInputError(f"{what} is empty")
    pure = PurePosixPath(path)
    if pure.is_absolute() or path.startswith("~"):
        raise TrainfleetInputError(f"{what} {path!r} must be relative to the repository root")
    if not pure.parts:
        raise TrainfleetInputError(f"{what} {path!r} names no file")
    if any(part == ".." for part in pure.parts):
        raise TrainfleetInputError(f"{what} {path!r} escapes the repository")
    if not all(_SCRIPT_PART.fullmatch(part) for part in pure.parts) or pure.parts[0].startswith("-"):
        raise TrainfleetInputError(f"{what} {path!r} contains characters that are not allowed")
    return pure


def validate_script_path(path: str) -> str:
    """A relative path inside the repository to a .py or .sh script."""
    pure = _repo_path(path, "script path")
    if pure.suffix not in (".py", ".sh"):
        raise TrainfleetInputError(f"script path {path!r} must name a .py or .sh file")
    return str(pure)


def validate_directory(path: str, what: str = "workdir") -> str:
    """A directory inside the repository, relative to its root."""
    return str(_repo_path(path, what))


def validate_script_args(args: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    for arg in args:
        if not isinstance(arg, str) or not _ARG.fullmatch(arg):
            raise TrainfleetInputError(f"script argument {arg!r} contains characters that are not allowed")
    return tuple(args)


def is_identifier(value) -> bool:
    """Job, campaign and run ids: lowercase letters, digits and '-', at most 63 characters."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def validate_identifier(value: str, what: str) -> str:
    """`value` if it is an id (is_identifier), else a one-line input error naming `what`."""
    if not is_identifier(value):
        raise TrainfleetInputError(
            f"{what} {value!r} must be 1-63 lowercase letters, digits or '-', starting with a letter or digit"
        )
    return value


def validate_positive(value, what: str, *, integer: bool = True):
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
        raise TrainfleetInputError(f"{what} must be a positive {'integer' if integer else 'number'}, got {value!r}")
    return value


def validate_snippet(value, what: str) -> str:
    """Shell commands (`setup`, `run`): text of lines, at most 20000 characters. They run as given, with
    the user's own authority on their own instance; values they need arrive as environment variables."""
    if not isinstance(value, str) or not value.strip() or len(value) > 20_000 or not _SNIPPET.fullmatch(value):
        raise TrainfleetInputError(f"{what} must be shell commands (text, at most 20000 characters)")
    return value
