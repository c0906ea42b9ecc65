"""Least privilege for ``prtg-ai act stop-idle-gpus``: its IAM policy grants exactly what the action calls.

The reads the action shares with gpu_spend on every resource; ``ec2:StopInstances`` only on
instances carrying the opt-in tag the code looks for, and denied on protected ones; no
other write (no TerminateInstances, ever). The e2e test checks at run time that every
operation the action made is in ``ACT_IAM_ACTIONS``.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

from prtg_ai.actions import idle_policy as ip
from prtg_ai.backends import aws

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / aws.ACT_POLICY_FILE
ACTION = REPO / "sensors" / "prtg_ai" / "actions" / "stop_idle_gpus.py"
GPU_SPEND = REPO / "sensors" / "prtg_ai" / "gpu_spend" / "gpu_spend.py"


def _statements():
    policy = json.loads(POLICY.read_text(encoding="utf-8"))
    assert policy["Version"] == "2012-10-17"
    for st in policy["Statement"]:
        assert not any(k in st for k in ("NotAction", "NotResource", "NotPrincipal"))
    return policy["Statement"]


def _session_methods_called(path: Path) -> set[str]:
    """Names of ``session.<method>(...)`` calls in a module (the action talks to AWS only through them)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.func.attr for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and isinstance(n.func.value, ast.Name) and n.func.value.id == "session"}


def _operations_of(method: str) -> set[tuple[str, str]]:
    """The (service, operation) pairs a backend method calls, directly or through ``_paged``."""
    tree = ast.parse((REPO / "sensors" / "prtg_ai" / "backends" / "aws.py").read_text(encoding="utf-8"))
    fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == method)
    ops, helpers = set(), set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "_call" and isinstance(node.args[2], ast.Constant):
                ops.add((node.args[0].value, node.args[2].value))
            elif node.func.attr == "_paged" and isinstance(node.args[1], ast.Constant):
                ops.add((node.args[0].value, node.args[1].value))
            elif isinstance(node.func.value, ast.Name) and node.func.value.id == "self":
                helpers.add(node.func.attr)
    for helper in helpers - {"_call", "_paged", "_client", "_global_region", "_session"}:
        ops |= _operations_of(helper)
    return ops


def test_the_action_calls_exactly_the_operations_its_policy_lists():
    methods = _session_methods_called(ACTION) | {"instance_types", "on_demand_price_list"}  # via gpu_spend's catalogue
    assert "instance_types" in _session_methods_called(GPU_SPEND)
    used = set()
    for method in methods - {"default_region"}:  # no network call
        used |= _operations_of(method)
    assert used == set(aws.ACT_IAM_ACTIONS)


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
    text = (REPO / "sensors" / "prtg_ai" / "backends" / "aws.py").read_text(encoding="utf-8")
    assert "TerminateInstances" not in text.replace("Never TerminateInstances", "")
    assert "Terminate" not in POLICY.read_text(encoding="utf-8")


def test_a_denied_stop_names_the_action_policy():
    from botocore.exceptions import ClientError

    exc = ClientError({"Error": {"Code": "UnauthorizedOperation", "Message": "not authorized to perform"},
                       "ResponseMetadata": {"HTTPStatusCode": 403}}, "StopInstances")
    err = aws.translate(exc, "ec2", "StopInstances")
    assert err.kind == "denied" and err.action == "ec2:StopInstances"
    assert aws.ACT_POLICY_FILE in err.message()
