"""moto's server on 127.0.0.1 as a child process: the embedded default AWS for local runs and e2e tests.

The server runs in its own session (a Ctrl-C at the terminal reaches `trainfleet`, which still needs the
server to tear down, not the server) and dies with the process that started it: this module's `__main__`
arms the parent-death signal and a watchdog on the parent's pid (`guard.arm`) before it serves, so a
SIGKILLed `trainfleet` leaves no server listening.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request

import boto3

from instance_benchmarks.embedded.guard import arm

LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MotoServer:
    """Start with `with MotoServer() as server:`; `server.env` points boto3 and the CLI at it."""

    def __init__(self, region: str = "us-east-1", port: int | None = None) -> None:
        self.region = region
        self.port = port or _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._process.pid if self._process is not None else None

    @property
    def env(self) -> dict[str, str]:
        return {
            **LOCAL_CREDENTIALS,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }

    def start(self, timeout: float = 30.0) -> "MotoServer":
        self._process = subprocess.Popen(
            [sys.executable, "-m", "instance_benchmarks.embedded.moto_server", "--parent", str(os.getpid()), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **LOCAL_CREDENTIALS},
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"moto server exited with status {self._process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1):  # nosec B310  # http://127.0.0.1:<port> we started
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto server did not answer on {self.endpoint} within {timeout:.0f}s")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def client(self, service: str):
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=LOCAL_CREDENTIALS["AWS_SESSION_TOKEN"],
        )

    def __enter__(self) -> "MotoServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """`python -m instance_benchmarks.embedded.moto_server --parent PID [moto.server options]`."""
    from moto.server import main as serve  # heavy: only the server's own process loads moto

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--parent", type=int, required=True)
    args, rest = parser.parse_known_args(argv)
    arm(args.parent, lambda: os._exit(0))  # no state worth saving: the bucket is mirrored by the environment
    serve(rest)


if __name__ == "__main__":
    main()
