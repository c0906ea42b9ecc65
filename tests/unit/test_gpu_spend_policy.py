"""Least privilege: the shipped IAM policy grants exactly what the AWS backend calls.

The backend refuses any call its table (``IAM_ACTIONS``) does not map to an IAM action,
so a new call cannot be added without one; the e2e test checks that a full refresh
makes exactly the table's calls. Also: the error translation that names a missing action.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prtg_ai.backends import aws

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "installer" / "assets" / "iam" / "prtg-ai-gpu-spend-policy.json"


def test_a_call_outside_the_iam_tables_is_refused_before_any_request():
    # What keeps the tables (and so the policies) complete: a new call without its IAM action
    # fails in every test that reaches it. The e2e test checks a full refresh makes exactly
    # the calls of IAM_ACTIONS (test_every_call_the_backend_makes_is_in_the_iam_policy_and_nothing_more).
    session = aws.Aws(env={"AWS_ACCESS_KEY_ID": "AKIATEST", "AWS_SECRET_ACCESS_KEY": "x",
                           "AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    called, sent = set(aws.CALLED), dict(aws.SENT)
    for service, op in (("ec2", "TerminateInstances"), ("ce", "GetCostAndUsageWithResources"), ("iam", "ListUsers")):
        with pytest.raises(LookupError, match=f"AWS {service} {op} is in neither IAM_ACTIONS nor ACT_IAM_ACTIONS"):
            session._call(service, "us-east-1", op)
        with pytest.raises(LookupError, match=f"AWS {service} {op} is in neither"):  # the paged way too
            next(session._pages(service, "us-east-1", op, {}, max_pages=1))
    assert (set(aws.CALLED), dict(aws.SENT)) == (called, sent)  # nothing was sent


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
