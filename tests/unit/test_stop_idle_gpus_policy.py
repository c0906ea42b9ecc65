"""Least privilege for ``prtg-ai act stop-idle-gpus``: its IAM policy grants exactly what the action calls.

The reads the action shares with gpu_spend on every resource; ``ec2:StopInstances`` only on
instances carrying the opt-in tag the code looks for, and denied on protected ones; no
other write (no TerminateInstances, ever). The backend refuses calls outside its tables;
the e2e test checks at run time that the action's calls are exactly ``ACT_IAM_ACTIONS``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prtg_ai.actions import idle_policy as ip
from prtg_ai.backends import aws

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / aws.ACT_POLICY_FILE


def _statements():
    policy = json.loads(POLICY.read_text(encoding="utf-8"))
    assert policy["Version"] == "2012-10-17"
    for st in policy["Statement"]:
        assert not any(k in st for k in ("NotAction", "NotResource", "NotPrincipal"))
    return policy["Statement"]


def test_policy_grants_the_reads_everywhere_and_stop_only_on_opted_in_instances():
    statements = _statements()
    allowed = [a for st in statements if st["Effect"] == "Allow" for a in st["Action"]]
    assert len(allowed) == len(set(allowed))
    assert not any("*" in a for a in allowed)
    assert set(allowed) == {a for a in aws.ACT_IAM_ACTIONS.values() if a}
    writes = [st for st in statements if st["Effect"] == "Allow" and "ec2:StopInstances" in st["Action"]]
    assert len(writes) == 1 and writes[0]["Action"] == ["ec2:StopInstances"]
    stop = writes[0]
    assert stop["Resource"] == "arn:aws:ec2:*:*:instance/*"
    # The condition names the tag and value the code opts in by (case-insensitively, like the code).
    assert stop["Condition"] == {"StringEqualsIgnoreCase": {
        f"aws:ResourceTag/{ip.DEFAULT_OPT_IN_KEY}": ip.DEFAULT_OPT_IN_VALUE}}
    for st in statements:
        if st["Effect"] == "Allow" and st is not stop:
            assert st["Resource"] == "*"
            assert not any(a.startswith("ec2:") and not a.startswith("ec2:Describe") for a in st["Action"])


def test_protected_instances_are_denied_by_the_policy_too():
    deny = [st for st in _statements() if st["Effect"] == "Deny"]
    assert len(deny) == 1 and deny[0]["Action"] == ["ec2:StopInstances"]
    # Null false = "the tag is present": the code's rule (any value protects).
    assert deny[0]["Condition"] == {"Null": {f"aws:ResourceTag/{ip.DEFAULT_PROTECT_KEY}": "false"}}


def test_nothing_terminates():
    tables = {**aws.IAM_ACTIONS, **aws.ACT_IAM_ACTIONS}
    assert not any("Terminate" in op or "Terminate" in (action or "") for (_, op), action in tables.items())
    # And the backend refuses a call outside its tables before sending anything.
    with pytest.raises(LookupError, match="TerminateInstances"):
        aws.Aws(env={"AWS_ACCESS_KEY_ID": "AKIATEST", "AWS_SECRET_ACCESS_KEY": "x"})._call(
            "ec2", "us-east-1", "TerminateInstances", InstanceIds=["i-0123456789abcdef0"])
    assert "Terminate" not in POLICY.read_text(encoding="utf-8")


def test_a_denied_stop_names_the_action_policy():
    from botocore.exceptions import ClientError

    exc = ClientError({"Error": {"Code": "UnauthorizedOperation", "Message": "not authorized to perform"},
                       "ResponseMetadata": {"HTTPStatusCode": 403}}, "StopInstances")
    err = aws.translate(exc, "ec2", "StopInstances")
    assert err.kind == "denied" and err.action == "ec2:StopInstances"
    assert aws.ACT_POLICY_FILE in err.message()
