"""EC2 specifics: client tokens that keep the attempt, end times from state transitions."""
from datetime import datetime, timezone

from instance_benchmarks.backends.ec2.instances import client_token, ended_at


def test_client_token_keeps_the_attempt_for_long_names():
    campaign, run = "c" * 63, "c5-xlarge-12345678"
    tokens = {client_token(campaign, run, attempt) for attempt in (1, 2, 3)}
    assert len(tokens) == 3 and all(len(t) <= 64 for t in tokens)
    assert client_token("short", "r", 2) == "short/r/2"


def test_ended_at_reads_the_state_transition_reason():
    instance = {"StateTransitionReason": "User initiated (2026-11-23 13:44:05 GMT)"}
    assert ended_at(instance) == datetime(2026, 11, 23, 13, 44, 5, tzinfo=timezone.utc)
    assert ended_at({"StateTransitionReason": ""}) is None
