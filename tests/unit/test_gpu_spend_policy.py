"""Least privilege: the shipped IAM policy grants exactly what the AWS backend calls.

The e2e test checks the same at run time (every operation a full refresh makes);
this one reads the backend's source, so a new call cannot be added without its
IAM action, and the error translation that names a missing action.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from prtg_ai.backends import aws

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "installer" / "assets" / "iam" / "prtg-ai-gpu-spend-policy.json"
BACKEND = REPO / "sensors" / "prtg_ai" / "backends" / "aws.py"


def _called_operations() -> set[tuple[str, str]]:
    """Every ``self._call("service", region, "Operation", ...)`` and ``self._paged("service", "Operation", ...)``
    in the backend's source; only the paging helpers ``_paged`` and ``_pages`` may pass them on as variables."""
    found = set()
    tree = ast.parse(BACKEND.read_text(encoding="utf-8"))
    forwarding = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name in ("_paged", "_pages")
                  for n in ast.walk(f)}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr == "_call":
            service, op = node.args[0], node.args[2]
        elif node.func.attr == "_paged":
            service, op = node.args[0], node.args[1]
        else:
            continue
        if id(node) in forwarding:
            continue
        assert isinstance(service, ast.Constant) and isinstance(op, ast.Constant), ast.dump(node)
        found.add((service.value, op.value))
    return found


def test_backend_calls_are_exactly_the_mapped_operations():
    # gpu_spend's calls, and those of the stop-idle-gpus action (its own policy: test_stop_idle_gpus_policy.py).
    assert _called_operations() == set(aws.IAM_ACTIONS) | set(aws.ACT_IAM_ACTIONS)


def test_policy_grants_exactly_the_needed_actions():
    policy = json.loads(POLICY.read_text(encoding="utf-8"))
    assert policy["Version"] == "2012-10-17"
    granted = []
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        assert statement["Resource"] == "*"  # these read APIs support no resource-level scoping
        assert not any(k in statement for k in ("NotAction", "NotResource"))
        granted += statement["Action"]
    assert len(granted) == len(set(granted)), "an action is granted twice"
    assert not any("*" in a for a in granted), "no wildcards in a least-privilege policy"
    needed = {a for a in aws.IAM_ACTIONS.values() if a}
    assert set(granted) == needed


def _client_error(code: str, message: str = "", status: int = 400):
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "GetCostAndUsage")


@pytest.mark.parametrize("code, kind", [
    ("AccessDeniedException", "denied"), ("UnauthorizedOperation", "denied"),
    ("LimitExceededException", "throttled"), ("RequestLimitExceeded", "throttled"),
    ("ThrottlingException", "throttled"), ("InvalidClientTokenId", "credentials"),
    ("ExpiredToken", "credentials"), ("InternalServerError", "failed"),
])
def test_client_errors_are_classified(code, kind):
    err = aws.translate(_client_error(code, "details"), "ce", "GetCostAndUsage")
    assert err.kind == kind
    assert err.transient == (kind in ("throttled", "failed"))


def test_denial_names_the_iam_action_not_the_api_name():
    err = aws.translate(_client_error("AccessDenied", "User: arn:aws:iam::1:user/p is not authorized"),
                        "budgets", "DescribeBudgets")
    assert err.action == "budgets:ViewBudget"
    assert "lack IAM permission budgets:ViewBudget" in err.message()
    assert "prtg-ai-gpu-spend-policy.json" in err.message()


def test_connection_and_credential_errors():
    from botocore.exceptions import EndpointConnectionError, NoCredentialsError, ReadTimeoutError

    err = aws.translate(EndpointConnectionError(endpoint_url="http://127.0.0.1:9/"), "ec2", "DescribeInstances")
    assert err.kind == "unreachable" and "http://127.0.0.1:9/" in err.message()
    err = aws.translate(ReadTimeoutError(endpoint_url="https://ce.us-east-1.amazonaws.com/"), "ce", "GetCostAndUsage")
    assert err.kind == "unreachable" and "timed out" in err.message()
    err = aws.translate(NoCredentialsError(), "sts", "GetCallerIdentity")
    assert err.kind == "credentials" and not err.transient


def test_a_bug_is_not_disguised_as_an_aws_error():
    with pytest.raises(KeyError):
        aws.translate(KeyError("x"), "ce", "GetCostAndUsage")


def test_importing_the_backend_does_not_import_boto3():
    import subprocess
    import sys

    code = ("import sys; import prtg_ai.backends.aws, prtg_ai.gpu_spend.gpu_spend; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
