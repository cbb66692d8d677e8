"""What the EC2 and SageMaker backends share: trainfleet's own wheel, shipped apart from the user's code (as SkyPilot
does): EC2 uploads it for each instance's user data to install, SageMaker unpacks it into the job's code channel.
(Cloning the campaign's repository at its commit, which the agent does too, is `core.git.clone`.)

Built with pip from the installed package's source tree (a copy of it, so the checkout is not touched),
cached by the SHA-256 of its sources, and uploaded once per campaign to `campaigns/<id>/agent/`. The
user data downloads it with the instance role and checks the SHA-256 recorded here before installing.
"""
from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import instance_benchmarks
from instance_benchmarks.core.contract import agent_prefix

SOURCE_ROOT = Path(instance_benchmarks.__file__).resolve().parents[1]
PACKAGES = ("instance_benchmarks", "stacks", "training_scripts")
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "trainfleet" / "wheels"


@dataclass(frozen=True)
class AgentWheel:
    path: Path
    sha256: str

    @property
    def name(self) -> str:
        return self.path.name


def _sources(root: Path) -> list[Path]:
    files = [root / "pyproject.toml"]
    for package in PACKAGES:
        files += sorted(p for p in (root / package).rglob("*") if p.is_file() and "__pycache__" not in p.parts
                        and p.suffix != ".pyc")
    return files


def build_wheel(root: Path = SOURCE_ROOT, cache: Path = CACHE) -> AgentWheel:
    """The wheel of the installed trainfleet sources (built once per distinct source tree)."""
    if not (root / "pyproject.toml").is_file():
        raise RuntimeError(f"cannot build the agent wheel: {root} is not a trainfleet source tree")
    digest = hashlib.sha256()
    for path in _sources(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    target = cache / digest.hexdigest()[:16]
    wheels = sorted(target.glob("*.whl")) if target.is_dir() else []
    if not wheels:
        with tempfile.TemporaryDirectory(prefix="trainfleet-wheel-") as tmp:
            staging = Path(tmp) / "src"
            staging.mkdir()
            shutil.copy2(root / "pyproject.toml", staging / "pyproject.toml")
            for package in PACKAGES:
                shutil.copytree(root / package, staging / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            built = Path(tmp) / "dist"
            subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "--no-index", "-w", str(built), str(staging)], check=True, capture_output=True)
            [wheel] = built.glob("*.whl")
            target.mkdir(parents=True, exist_ok=True)
            # concurrent builds (two commands, test workers): the first complete file wins, atomically, so a
            # reader never sees half a wheel nor one whose bytes differ from the SHA-256 it computed
            partial = target / f".{wheel.name}.{os.getpid()}.partial"
            shutil.copyfile(wheel, partial)
            try:
                os.link(partial, target / wheel.name)
            except FileExistsError:
                pass
            finally:
                partial.unlink()
        wheels = sorted(target.glob("*.whl"))
    path = wheels[0]
    return AgentWheel(path, hashlib.sha256(path.read_bytes()).hexdigest())


def publish_wheel(s3, bucket: str, campaign: str, wheel: AgentWheel) -> str:
    """Upload the wheel unless the object at its key holds exactly its bytes; returns its S3 key.

    The key names the wheel's full SHA-256, but a key is predictable: whatever is there (a planted file, a
    truncated upload) is read back, at most one byte more than the wheel, and replaced when its SHA-256
    differs, so a wrong object cannot make every attempt fail the user data's checksum."""
    key = f"{agent_prefix(campaign)}/{wheel.sha256}/{wheel.name}"
    data = wheel.path.read_bytes()
    try:
        there = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{len(data)}")["Body"].read()
    except s3.exceptions.ClientError as error:  # not there (404; 403 where listing is not allowed), or empty (416)
        if error.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404", "403", "AccessDenied", "InvalidRange"):
            raise
        there = None
    if there is None or hashlib.sha256(there).hexdigest() != wheel.sha256:
        s3.put_object(Bucket=bucket, Key=key, Body=data, Metadata={"sha256": wheel.sha256},
                      ChecksumSHA256=base64.b64encode(hashlib.sha256(data).digest()).decode())
    return key
