"""The instance metadata service (IMDSv2): the instance's identity (its type and launch time) and spot
interruption notices, forwarded as SIGTERM."""
from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request

IMDS_DEFAULT = "http://169.254.169.254"
POLL_SECONDS = 5.0


def imds_endpoint() -> str | None:
    """IMDS base URL, or None where metadata is disabled (botocore's AWS_EC2_METADATA_DISABLED)."""
    if os.environ.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true":
        return None
    return os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", IMDS_DEFAULT).rstrip("/")


def _token(endpoint: str, timeout: float) -> str:
    """An IMDSv2 session token (PUT /latest/api/token)."""
    token_request = urllib.request.Request(f"{endpoint}/latest/api/token", method="PUT",
                                           headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"})
    with urllib.request.urlopen(token_request, timeout=timeout) as response:  # nosec B310  # http://169.254.169.254 (IMDS) or a test's endpoint, never a user's URL
        return response.read().decode()


def instance_identity(endpoint: str | None, timeout: float = 1.0) -> dict | None:
    """The instance identity document's `instanceType` and `pendingTime` (when the instance was launched,
    ISO 8601 UTC), or None where there is no metadata service or it does not answer in time (not on EC2).
    AWS documents the document at /latest/dynamic/instance-identity/document (IMDSv2: token first)."""
    if endpoint is None:
        return None
    try:
        token = _token(endpoint, timeout)
        request = urllib.request.Request(f"{endpoint}/latest/dynamic/instance-identity/document",
                                         headers={"X-aws-ec2-metadata-token": token})
        with urllib.request.urlopen(request, timeout=timeout) as response:  # nosec B310  # the IMDS endpoint, as above
            document = json.loads(response.read(65536) or b"{}")
    except (OSError, ValueError):  # unreachable, refused, timed out, HTTP error, not JSON
        return None
    if not isinstance(document, dict):
        return None
    facts = {key: document[key] for key in ("instanceType", "pendingTime") if isinstance(document.get(key), str)}
    return facts or None


def spot_interruption_notice(endpoint: str, timeout: float = 2.0) -> dict | None:
    """IMDSv2: a session token, then spot/instance-action (404 = no notice)."""
    token = _token(endpoint, timeout)
    action_request = urllib.request.Request(f"{endpoint}/latest/meta-data/spot/instance-action",
                                            headers={"X-aws-ec2-metadata-token": token})
    try:
        with urllib.request.urlopen(action_request, timeout=timeout) as response:  # nosec B310  # the IMDS endpoint, as above
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise


class InterruptionWatcher(threading.Thread):
    """Polls for a spot notice; on one, calls `on_notice(notice)` once and stops."""

    def __init__(self, endpoint: str, on_notice, interval: float = POLL_SECONDS) -> None:
        super().__init__(daemon=True)
        self.endpoint, self.on_notice, self.interval = endpoint, on_notice, interval
        self.notice: dict | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            try:
                notice = spot_interruption_notice(self.endpoint)
            except (OSError, ValueError):
                continue  # IMDS hiccup: try again next tick
            if notice is not None:
                self.notice = notice
                self.on_notice(notice)
                return

    def stop(self) -> None:
        self._halt.set()
