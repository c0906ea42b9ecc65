"""AWS access through boto3; the only module that imports it, and only inside functions.

Importing this module costs nothing: boto3/botocore load on the first call, so a
``gpu_spend`` scan answered from its cache never loads them.

Endpoints, profiles and regions follow boto3's own settings: ``AWS_ENDPOINT_URL``,
per-service ``AWS_ENDPOINT_URL_<SERVICE>`` (``..._COST_EXPLORER``, ``..._PRICING``,
``..._EC2``, ``..._CLOUDWATCH``, ``..._BUDGETS``, ``..._STS``), ``AWS_PROFILE`` /
``--profile``, ``AWS_DEFAULT_REGION``, the shared config files and instance roles.
Every client has short connect/read timeouts and at most one retry; Cost Explorer
clients none (each request costs $0.01, and a throttled refresh is answered from
the cache instead).

What it reads, and the IAM action each call needs (``IAM_ACTIONS``; the shipped
least-privilege policy is ``installer/assets/iam/prtg-ai-gpu-spend-policy.json``):

* STS ``GetCallerIdentity`` (no permission needed): the account id that keys the shared cost cache;
* Cost Explorer ``GetCostAndUsage`` / ``GetCostForecast`` (us-east-1): GPU-family spend;
* Budgets ``DescribeBudgets`` (``budgets:ViewBudget``);
* EC2 ``DescribeInstances``, ``DescribeInstanceTypes``, ``DescribeSpotPriceHistory``;
* Pricing ``GetProducts`` (us-east-1): on-demand list prices;
* CloudWatch ``ListMetrics`` / ``GetMetricData``: CWAgent ``nvidia_smi_utilization_gpu``, ``AWS/EC2 CPUUtilization``.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from typing import Any

from prtg_ai.core.deadline import doing, done
from prtg_ai.core.errors import SensorError
from prtg_ai.core.log import get_logger

log = get_logger("prtg_ai.aws")

CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 15.0
MAX_ATTEMPTS = 2          # one retry for the free read APIs
CE_MAX_ATTEMPTS = 1       # none for Cost Explorer: a retry is another $0.01 and throttling is served from cache
MAX_CE_PAGES = 10         # each page is billed; an unfiltered surprise must not run up a bill
MAX_PAGES = 50
POLICY_FILE = "installer/assets/iam/prtg-ai-gpu-spend-policy.json"

# (service, operation) -> the IAM action it needs (None: needs no permission).
IAM_ACTIONS: dict[tuple[str, str], str | None] = {
    ("sts", "GetCallerIdentity"): None,
    ("ce", "GetCostAndUsage"): "ce:GetCostAndUsage",
    ("ce", "GetCostForecast"): "ce:GetCostForecast",
    ("budgets", "DescribeBudgets"): "budgets:ViewBudget",
    ("ec2", "DescribeInstances"): "ec2:DescribeInstances",
    ("ec2", "DescribeInstanceTypes"): "ec2:DescribeInstanceTypes",
    ("ec2", "DescribeSpotPriceHistory"): "ec2:DescribeSpotPriceHistory",
    ("pricing", "GetProducts"): "pricing:GetProducts",
    ("cloudwatch", "ListMetrics"): "cloudwatch:ListMetrics",
    ("cloudwatch", "GetMetricData"): "cloudwatch:GetMetricData",
}
# The ``prtg-ai act stop-idle-gpus`` action's calls, with their own least-privilege policy:
# the fleet reads it shares with gpu_spend, plus StopInstances (conditioned on the opt-in tag there).
ACT_POLICY_FILE = "installer/assets/iam/prtg-ai-stop-idle-gpus-policy.json"
ACT_IAM_ACTIONS: dict[tuple[str, str], str | None] = {
    **{call: IAM_ACTIONS[call] for call in (
        ("ec2", "DescribeInstances"), ("ec2", "DescribeInstanceTypes"), ("ec2", "DescribeSpotPriceHistory"),
        ("pricing", "GetProducts"), ("cloudwatch", "ListMetrics"), ("cloudwatch", "GetMetricData"))},
    ("ec2", "StopInstances"): "ec2:StopInstances",
}
# Every (service, operation) this process called: tests check it against IAM_ACTIONS and the policy.
CALLED: set[tuple[str, str]] = set()
# HTTP requests sent per service (every attempt, counted by a botocore hook): what AWS bills for CE.
SENT: Counter = Counter()

_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedAccess",
           "AuthorizationError", "UnauthorizedException"}
_THROTTLED = {"Throttling", "ThrottlingException", "ThrottledException", "LimitExceededException",
              "RequestLimitExceeded", "TooManyRequestsException", "RequestThrottled",
              "RequestThrottledException", "SlowDown", "EC2ThrottledException"}
_BAD_CREDENTIALS = {"InvalidClientTokenId", "UnrecognizedClientException", "AuthFailure",
                    "SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException",
                    "InvalidAccessKeyId", "IncompleteSignature", "MissingAuthenticationToken"}
_SERVICE_NAMES = {"ce": "Cost Explorer", "pricing": "Pricing", "ec2": "EC2", "cloudwatch": "CloudWatch",
                  "budgets": "Budgets", "sts": "STS"}


# -- errors ----------------------------------------------------------------------
class AwsError(SensorError):
    """An AWS call failed; ``kind`` says how the sensor should treat it.

    Kinds: ``credentials`` and ``denied`` are configuration problems (error result);
    ``throttled``, ``unreachable`` and ``failed`` are transient (serve the cache).
    """

    kind = "failed"
    transient = True

    def __init__(self, problem: str, hint: str = "", action: str | None = None, code: str | None = None):
        super().__init__(problem, hint)
        self.action = action
        self.code = code


class AwsNoCredentials(AwsError):
    kind, transient = "credentials", False


class AwsDenied(AwsError):
    kind, transient = "denied", False


class AwsThrottled(AwsError):
    kind = "throttled"


class AwsUnreachable(AwsError):
    kind = "unreachable"


def _what(service: str, op: str) -> str:
    return f"{_SERVICE_NAMES.get(service, service)} {op}"


def _client_error(exc, service: str, op: str, what: str, action: str | None) -> AwsError:
    """An AWS API error answer (botocore ``ClientError``), by its code and HTTP status."""
    err = exc.response.get("Error", {}) if isinstance(exc.response, dict) else {}
    code = str(err.get("Code", "") or "")
    status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode", 0) if isinstance(exc.response, dict) else 0
    message = " ".join(str(err.get("Message", "") or "").split())[:200]
    # The code and status only: the message is the remote body's text (an HTML error page
    # from a proxy or a 500) and is never copied into a log line or PRTG's text.
    log.info("%s failed: %s (HTTP %s)", what, code[:60], status)
    if code in _DENIED or "not authorized to perform" in message:
        needed = action or f"{service}:{op}"
        return AwsDenied(
            f"AWS denied {what}: the credentials lack IAM permission {needed} ({code}).",
            f"Add {needed} to the probe's IAM policy (the pack ships the least-privilege policy "
            f"{POLICY_FILE if (service, op) in IAM_ACTIONS else ACT_POLICY_FILE}).",
            action=needed, code=code)
    if code in _BAD_CREDENTIALS:
        return AwsNoCredentials(f"AWS rejected the credentials for {what} ({code}).",
                                "Check the access key is active and the clock of the probe is right.",
                                code=code)
    if code in _THROTTLED or status == 429:
        return AwsThrottled(f"AWS throttled {what} ({code or status}).",
                            "The sensor backs off and serves cached data; fewer sensors per account help.",
                            code=code)
    if code == "OptInRequired":
        return AwsDenied(f"{what} needs an opt-in for this account ({code}).",
                         "Enable the service for the account (Cost Explorer: Billing console).", code=code)
    shown = code if code.replace(".", "").isalnum() and len(code) <= 60 else f"HTTP {status}"
    return AwsError(f"AWS {what} failed ({shown or status}).", "Transient: the sensor retries later.", code=code)


def _credentials_error(exc, what: str) -> AwsError | None:
    """No credentials, an unknown profile, or a credential source that failed; None for anything else."""
    from botocore import exceptions as bx

    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        return AwsNoCredentials(
            f"No AWS credentials found for {what}.",
            "Give the probe credentials: an instance/task role, --profile NAME with a profile in the "
            "shared config, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the sensor's environment.")
    if isinstance(exc, bx.ProfileNotFound):
        return AwsNoCredentials(f"AWS profile {exc.kwargs.get('profile', '')!s:.60} not found.",
                                "Check --profile / AWS_PROFILE against ~/.aws/config of the account the probe runs as.")
    credential_errors = tuple(getattr(bx, name) for name in (
        "CredentialRetrievalError", "NoAuthTokenError", "SSOTokenLoadError", "TokenRetrievalError",
        "UnauthorizedSSOTokenError", "InvalidConfigError") if hasattr(bx, name))
    if isinstance(exc, credential_errors):
        return AwsNoCredentials(f"AWS credentials could not be loaded for {what} ({type(exc).__name__}).",
                                "Check the profile's credential source (role, SSO login, process).")
    return None


def translate(exc: BaseException, service: str, op: str) -> AwsError:
    """Turn a boto3/botocore exception into an ``AwsError`` with an actionable text (never the secret)."""
    from botocore import exceptions as bx

    action = IAM_ACTIONS.get((service, op)) or ACT_IAM_ACTIONS.get((service, op))
    what = _what(service, op)
    credentials = _credentials_error(exc, what)
    if credentials is not None:
        return credentials
    if isinstance(exc, bx.NoRegionError):
        return AwsError(f"No AWS region for {what}.", "Give --region or set AWS_DEFAULT_REGION.")
    if isinstance(exc, (bx.ConnectionError, bx.HTTPClientError)):
        endpoint = getattr(exc, "kwargs", {}).get("endpoint_url", "") or ""
        kind = "timed out" if "Timeout" in type(exc).__name__ else "could not be reached"
        return AwsUnreachable(
            f"AWS endpoint {endpoint!s:.120} for {what} {kind}.".replace("  ", " "),
            "Check the probe's network path / proxy to AWS and any AWS_ENDPOINT_URL setting.")
    if isinstance(exc, bx.ClientError):
        return _client_error(exc, service, op, what, action)
    if isinstance(exc, bx.ParamValidationError):
        return AwsError(f"AWS {what} was called with an invalid parameter ({str(exc)[:200]}).",
                        "This is a bug in prtg-ai; please report it.")
    if isinstance(exc, bx.BotoCoreError):
        return AwsError(f"AWS {what} failed ({type(exc).__name__}).", "Transient: the sensor retries later.")
    from botocore.parsers import ResponseParserError

    if isinstance(exc, ResponseParserError):
        # A response cut off mid-body (connection dropped, proxy timeout). Its text holds
        # part of the raw body: never echo it.
        return AwsError(f"AWS answered {what} with an unreadable response (cut off or not AWS's format).",
                        "Transient: the sensor retries later and serves cached data meanwhile.")
    raise exc


# The key each JSON-protocol answer always carries. botocore's JSON parser turns a body
# it cannot parse (a truncated answer) into {"message": <body>} without raising, which
# would otherwise read as "no cost" and be cached for hours.
REQUIRED_KEYS = {
    ("ce", "GetCostAndUsage"): "ResultsByTime",
    ("ce", "GetCostForecast"): "Total",
    ("pricing", "GetProducts"): "PriceList",
}


def check_answer(doc, service: str, op: str) -> dict:
    """Return ``doc`` when it looks like a parsed AWS answer; raise a transient AwsError otherwise."""
    required = REQUIRED_KEYS.get((service, op))
    unreadable = not isinstance(doc, dict) or ("message" in doc and (required is None or required not in doc))
    if unreadable or (required is not None and required not in doc):
        raise AwsError(f"AWS answered {_what(service, op)} with an unreadable response (cut off or not AWS's format).",
                       "Transient: the sensor retries later and serves cached data meanwhile.")
    return doc


# -- clients ----------------------------------------------------------------------
# Long-running hosts (the agent) and in-process tests reuse sessions and clients; a
# PRTG script scan is one process and builds them once. The key covers every AWS_*
# setting, so a changed endpoint or key gets new ones.
_SESSIONS: dict[str, Any] = {}
_CLIENTS: dict[tuple, Any] = {}
_MAX_CACHED = 64
# AWS_ENDPOINT_URL_<SERVICE> names boto3 reads (the service id, upper-cased, spaces as underscores).
SERVICE_ENV = {"ce": "COST_EXPLORER", "pricing": "PRICING", "ec2": "EC2", "cloudwatch": "CLOUDWATCH",
               "budgets": "BUDGETS", "sts": "STS"}


def _aws_view(env) -> tuple:
    return tuple(sorted((k, v) for k, v in env.items() if k.startswith("AWS_")))


def _max_attempts(env) -> int:
    """At most ``MAX_ATTEMPTS``; fewer when the operator's ``AWS_MAX_ATTEMPTS`` asks for fewer."""
    try:
        wanted = int(env.get("AWS_MAX_ATTEMPTS", MAX_ATTEMPTS))
    except ValueError:
        wanted = MAX_ATTEMPTS
    return max(1, min(MAX_ATTEMPTS, wanted))


def _check_mapped(service: str, op: str) -> None:
    """Refuse a call the IAM tables do not list: the shipped policies would deny it to every user."""
    if (service, op) not in IAM_ACTIONS and (service, op) not in ACT_IAM_ACTIONS:
        raise LookupError(f"AWS {service} {op} is in neither IAM_ACTIONS nor ACT_IAM_ACTIONS")


def _count_send(service: str, **_kwargs) -> None:
    SENT[service] += 1


class Aws:
    """One AWS identity (profile or default chain) and the calls the sensor makes with it.

    Args:
        profile: ``--profile``; None for boto3's default chain.
        env: the sensor context's environment. When its ``AWS_*`` settings are the
            process's (every real scan), boto3 resolves everything itself. When a caller
            injected different ones (tests, embedding), the session is *hermetic*:
            credentials, profile, region, endpoints and config files come from ``env``
            only, and without credentials there it fails before any network access,
            so an injected environment can never fall through to the host's keys or to
            the instance metadata service.
    """

    def __init__(self, profile: str | None = None, env=None):
        self.env = dict(os.environ) if env is None else dict(env)
        self.hermetic = _aws_view(self.env) != _aws_view(os.environ)
        self.profile = profile or (self.env.get("AWS_PROFILE") if self.hermetic else None) or None
        self._key = hashlib.sha256(repr((self.profile, self.hermetic, _aws_view(self.env))).encode()).hexdigest()
        self._start = Counter(SENT)

    # -- plumbing --------------------------------------------------------
    def _session(self):
        session = _SESSIONS.get(self._key)
        if session is None:
            import boto3  # lazily: only a scan that must refresh pays for it

            if len(_SESSIONS) >= _MAX_CACHED:
                _SESSIONS.clear()
                _CLIENTS.clear()
            session = self._hermetic_session(boto3) if self.hermetic else \
                boto3.session.Session(profile_name=self.profile)
            _SESSIONS[self._key] = session
        return session

    def _hermetic_session(self, boto3):
        import botocore.session

        env = self.env
        core = botocore.session.Session()
        for var, name in (("AWS_CONFIG_FILE", "config_file"), ("AWS_SHARED_CREDENTIALS_FILE", "credentials_file")):
            if env.get(var):
                core.set_config_variable(name, env[var])
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
        if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY") and not self.profile:
            return boto3.session.Session(aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                                         aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                                         aws_session_token=env.get("AWS_SESSION_TOKEN") or None,
                                         region_name=region, botocore_session=core)
        if self.profile:
            return boto3.session.Session(profile_name=self.profile, region_name=region, botocore_session=core)
        from botocore.exceptions import NoCredentialsError

        raise NoCredentialsError()

    def _endpoint(self, service: str) -> str | None:
        if not self.hermetic:
            return None  # boto3 reads AWS_ENDPOINT_URL(_<SERVICE>) and the profile's endpoint_url itself
        return self.env.get(f"AWS_ENDPOINT_URL_{SERVICE_ENV.get(service, service.upper())}") or \
            self.env.get("AWS_ENDPOINT_URL") or None

    def _client(self, service: str, region: str | None):
        key = (self._key, service, region)
        client = _CLIENTS.get(key)
        if client is None:
            from functools import partial

            from botocore.config import Config

            attempts = CE_MAX_ATTEMPTS if service == "ce" else _max_attempts(self.env)
            config = Config(connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S,
                            retries={"mode": "standard", "total_max_attempts": attempts},
                            user_agent_extra="prtg-ai-gpu-spend")
            client = self._session().client(service, region_name=region, config=config,
                                            endpoint_url=self._endpoint(service))
            client.meta.events.register("before-send", partial(_count_send, service))
            _CLIENTS[key] = client
        return client

    def _call(self, service: str, region: str | None, op: str, **kwargs) -> dict:
        _check_mapped(service, op)
        doing(f"AWS {service} {op}")
        CALLED.add((service, op))
        try:
            from botocore import xform_name

            client = self._client(service, region)
            answer = getattr(client, xform_name(op))(**kwargs)
            done()
            return check_answer(answer, service, op)
        except AwsError:
            raise
        except Exception as exc:  # translated to an actionable AwsError; anything else is re-raised
            raise translate(exc, service, op) from None

    def sent(self, service: str) -> int:
        """HTTP requests sent to ``service`` by this object so far (retries included)."""
        return SENT[service] - self._start[service]

    def default_region(self) -> str | None:
        """The region boto3 would use (environment or profile), without a network call."""
        try:
            return self._session().region_name
        except Exception as exc:
            raise translate(exc, "sts", "GetCallerIdentity") from None

    def _global_region(self) -> str:
        # Cost Explorer, Pricing, Budgets and STS answer in us-east-1 (China: cn-northwest-1).
        region = self.env.get("AWS_REGION") or self.env.get("AWS_DEFAULT_REGION") or ""
        return "cn-northwest-1" if region.startswith("cn-") else "us-east-1"

    # -- identity ----------------------------------------------------------
    def account_id(self) -> str:
        """The 12-digit account id of the credentials (STS GetCallerIdentity; needs no permission)."""
        doc = self._call("sts", self._global_region(), "GetCallerIdentity")
        return str(doc["Account"])

    # -- Cost Explorer -------------------------------------------------------
    def cost_and_usage(self, start: date, end: date, families: Sequence[str], metric: str) -> list[dict]:
        """Daily ``metric`` of the given instance families over ``[start, end)``: all pages of ``ResultsByTime``.

        No GroupBy (each group multiplies pages, each page costs $0.01), one root
        operator in the filter; paged by hand on NextPageToken (botocore has no paginator for it).
        """
        request: dict[str, Any] = {
            "TimePeriod": {"Start": start.isoformat(), "End": end.isoformat()},
            "Granularity": "DAILY",
            "Metrics": [metric],
            "Filter": {"Dimensions": {"Key": "INSTANCE_TYPE_FAMILY", "Values": list(families)}},
        }
        return self._paged("ce", "GetCostAndUsage", request, "ResultsByTime", "NextPageToken", MAX_CE_PAGES)

    def _paged(self, service: str, op: str, request: dict[str, Any], items: str, token_key: str,
               max_pages: int, region: str | None = None) -> list[dict]:
        """Every ``items`` of at most ``max_pages`` pages (see ``_pages``).

        ``region`` defaults to the global region (Cost Explorer, Budgets, Pricing).
        """
        pages = self._pages(service, region or self._global_region(), op, request, max_pages, token_key)
        return [item for doc in pages for item in doc.get(items) or []]

    def _pages(self, service: str, region: str | None, op: str, request: dict[str, Any], max_pages: int,
               token_key: str = "NextToken") -> Iterator[dict]:
        """Each answer page of ``op``, at most ``max_pages``, each checked like ``_call``'s answer.

        botocore's paginator where the operation has one (``client.can_paginate``); a loop
        on ``token_key`` otherwise (Cost Explorer's ``GetCostAndUsage`` has none). Either
        way one HTTP request per page (plus retries), as ``SENT`` counts them.
        """
        from botocore import xform_name

        _check_mapped(service, op)
        try:
            client = self._client(service, region)
        except Exception as exc:
            raise translate(exc, service, op) from None
        if not client.can_paginate(xform_name(op)):
            for _ in range(max_pages):
                doc = self._call(service, region, op, **request)
                yield doc
                if not doc.get(token_key):
                    return
                request = {**request, token_key: doc[token_key]}
            return
        pages = iter(client.get_paginator(xform_name(op)).paginate(**request))
        for _ in range(max_pages):
            doing(f"AWS {service} {op}")
            CALLED.add((service, op))
            try:
                page = next(pages, None)
            except Exception as exc:  # translated to an actionable AwsError, as in _call
                raise translate(exc, service, op) from None
            done()
            if page is None:
                return
            yield check_answer(page, service, op)

    def cost_forecast(self, start: date, end: date, families: Sequence[str], metric: str) -> float | None:
        """Cost Explorer's forecast of ``metric`` over ``[start, end)``; None when AWS has too little history."""
        try:
            doc = self._call("ce", self._global_region(), "GetCostForecast",
                             TimePeriod={"Start": start.isoformat(), "End": end.isoformat()},
                             Metric=metric, Granularity="MONTHLY",
                             Filter={"Dimensions": {"Key": "INSTANCE_TYPE_FAMILY", "Values": list(families)}})
        except AwsError as exc:
            if exc.code == "DataUnavailableException":
                return None
            raise
        total = doc.get("Total") or {}
        if str(total.get("Unit", "USD")).upper() != "USD":
            return None
        return float(total.get("Amount", "0"))

    def budgets(self, account: str) -> list[dict]:
        """Every budget of the account (``DescribeBudgets``, all pages)."""
        request: dict[str, Any] = {"AccountId": account, "MaxResults": 100}
        return self._paged("budgets", "DescribeBudgets", request, "Budgets", "NextToken", MAX_PAGES)

    # -- EC2 ---------------------------------------------------------------
    def running_instances(self, region: str) -> list[dict]:
        """Pending and running instances: id, type, AZ and whether they are spot.

        No instance-type filter: wildcards are not honoured everywhere, and a GPU type
        outside the family list must still be found (DescribeInstanceTypes decides).
        """
        out: list[dict] = []
        request: dict[str, Any] = {"Filters": [{"Name": "instance-state-name", "Values": ["pending", "running"]}],
                                   "MaxResults": 1000}
        for reservation in self._paged("ec2", "DescribeInstances", request, "Reservations", "NextToken",
                                       MAX_PAGES, region=region):
            for inst in reservation.get("Instances") or []:
                out.append({
                    "id": inst.get("InstanceId", ""),
                    "type": inst.get("InstanceType", ""),
                    "az": (inst.get("Placement") or {}).get("AvailabilityZone", ""),
                    # On-demand instances have no InstanceLifecycle at all.
                    "lifecycle": inst.get("InstanceLifecycle") or "on-demand",
                })
        return out

    def instance_types(self, region: str, types: Iterable[str]) -> dict[str, dict]:
        """``DescribeInstanceTypes`` entries by type name (unknown names are skipped)."""
        names = sorted(set(types))
        out: dict[str, dict] = {}
        for i in range(0, len(names), 100):
            batch = names[i:i + 100]
            try:
                docs = self._instance_type_pages(region, batch)
            except AwsError as exc:
                if exc.code != "InvalidInstanceType" or len(batch) == 1:
                    if exc.code == "InvalidInstanceType":
                        continue
                    raise
                docs = []
                for name in batch:  # one unknown name fails the batch: ask one by one
                    try:
                        docs.extend(self._instance_type_pages(region, [name]))
                    except AwsError as inner:
                        if inner.code != "InvalidInstanceType":
                            raise
            for entry in docs:
                out[entry["InstanceType"]] = entry
        return out

    def _instance_type_pages(self, region: str, names: list[str]) -> list[dict]:
        return self._paged("ec2", "DescribeInstanceTypes", {"InstanceTypes": names}, "InstanceTypes", "NextToken",
                           MAX_PAGES, region=region)

    def spot_prices(self, region: str, types: Iterable[str], when: datetime) -> dict[str, dict[str, float]]:
        """Current Linux spot price per type and AZ (the last change at or before ``when``)."""
        names = sorted(set(types))
        if not names:
            return {}
        latest: dict[tuple[str, str], tuple[datetime, float]] = {}
        request: dict[str, Any] = {"InstanceTypes": names,
                                   "ProductDescriptions": ["Linux/UNIX", "Linux/UNIX (Amazon VPC)"],
                                   "StartTime": when, "EndTime": when, "MaxResults": 1000}
        for item in self._paged("ec2", "DescribeSpotPriceHistory", request, "SpotPriceHistory", "NextToken",
                                MAX_PAGES, region=region):
            try:
                price = float(item["SpotPrice"])
            except (KeyError, TypeError, ValueError):
                continue
            key = (item.get("InstanceType", ""), item.get("AvailabilityZone", ""))
            stamp = item.get("Timestamp") or datetime.min
            if key not in latest or _naive(stamp) >= _naive(latest[key][0]):
                latest[key] = (stamp, price)
        out: dict[str, dict[str, float]] = {}
        for (itype, az), (_, price) in latest.items():
            out.setdefault(itype, {})[az] = price
        return out

    # -- Pricing -------------------------------------------------------------
    def on_demand_price_list(self, region: str, instance_type: str) -> list:
        """The Pricing ``PriceList`` of Linux, shared-tenancy, on-demand ``instance_type`` in ``region``."""
        filters = [
            {"Type": "TERM_MATCH", "Field": "instanceType", "Value": instance_type},
            {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region},
            {"Type": "TERM_MATCH", "Field": "operatingSystem", "Value": "Linux"},
            {"Type": "TERM_MATCH", "Field": "tenancy", "Value": "Shared"},
            {"Type": "TERM_MATCH", "Field": "preInstalledSw", "Value": "NA"},
            {"Type": "TERM_MATCH", "Field": "capacitystatus", "Value": "Used"},
        ]
        request: dict[str, Any] = {"ServiceCode": "AmazonEC2", "Filters": filters, "MaxResults": 100}
        return self._paged("pricing", "GetProducts", request, "PriceList", "NextToken", 5)

    # -- CloudWatch ------------------------------------------------------------
    def gpu_metric_series(self, region: str) -> dict[str, list[list[dict]]]:
        """CWAgent ``nvidia_smi_utilization_gpu`` series per instance id (each series' dimensions)."""
        out: dict[str, list[list[dict]]] = {}
        seen: set = set()
        request: dict[str, Any] = {"Namespace": "CWAgent", "MetricName": "nvidia_smi_utilization_gpu"}
        for metric in self._paged("cloudwatch", "ListMetrics", request, "Metrics", "NextToken", MAX_PAGES,
                                  region=region):
            dims = [{"Name": d["Name"], "Value": d["Value"]} for d in metric.get("Dimensions") or []]
            key = tuple(sorted((d["Name"], d["Value"]) for d in dims))
            instance = next((d["Value"] for d in dims if d["Name"] == "InstanceId"), None)
            if instance and key not in seen:
                seen.add(key)
                out.setdefault(instance, []).append(dims)
        return out

    def metric_values(self, region: str, queries: Sequence[dict], start: datetime, end: datetime,
                      period: int) -> dict[str, list[float]]:
        """Period averages per query id (``GetMetricData``, 500 queries a call, all pages).

        Args:
            queries: dicts with ``id``, ``namespace``, ``metric`` and ``dims``.
        """
        out: dict[str, list[float]] = {q["id"]: [] for q in queries}
        for i in range(0, len(queries), 500):
            batch = [{"Id": q["id"], "ReturnData": True,
                      "MetricStat": {"Metric": {"Namespace": q["namespace"], "MetricName": q["metric"],
                                                "Dimensions": q["dims"]},
                                     "Period": period, "Stat": "Average"}}
                     for q in queries[i:i + 500]]
            request: dict[str, Any] = {"MetricDataQueries": batch, "StartTime": start, "EndTime": end}
            for res in self._paged("cloudwatch", "GetMetricData", request, "MetricDataResults", "NextToken",
                                   MAX_PAGES, region=region):
                out.setdefault(res.get("Id", ""), []).extend(float(v) for v in res.get("Values") or [])
        return out


    # -- the stop-idle-gpus action (ACT_IAM_ACTIONS) ---------------------------------
    def instances_for_review(self, region: str, instance_ids: Sequence[str] | None = None) -> list[dict]:
        """Running instances (or the given ones, in any state) with what the stop decision needs.

        Each: ``id``, ``type``, ``state``, ``launch_time`` (Unix seconds, None if absent),
        ``tags`` (dict), ``hibernation`` (``HibernationOptions.Configured``), ``lifecycle``, ``az``.
        """
        if instance_ids:
            # MaxResults and InstanceIds cannot be combined in one request.
            request: dict[str, Any] = {"InstanceIds": list(instance_ids)}
        else:
            request = {"Filters": [{"Name": "instance-state-name", "Values": ["running"]}], "MaxResults": 1000}
        out: list[dict] = []
        for reservation in self._paged("ec2", "DescribeInstances", request, "Reservations", "NextToken",
                                       MAX_PAGES, region=region):
            for inst in reservation.get("Instances") or []:
                launched = inst.get("LaunchTime")
                tags = {}
                for tag in (inst.get("Tags") or [])[:50]:  # AWS allows 50 tags per resource
                    tags[str(tag.get("Key", ""))[:128]] = str(tag.get("Value", ""))[:256]
                out.append({
                    "id": str(inst.get("InstanceId", "")),
                    "type": str(inst.get("InstanceType", "")),
                    "state": str((inst.get("State") or {}).get("Name", "")),
                    "launch_time": launched.timestamp() if isinstance(launched, datetime) else None,
                    "tags": tags,
                    "hibernation": bool((inst.get("HibernationOptions") or {}).get("Configured")),
                    "lifecycle": inst.get("InstanceLifecycle") or "on-demand",
                    "az": (inst.get("Placement") or {}).get("AvailabilityZone", ""),
                })
        return out

    def stop_instance(self, region: str, instance_id: str, hibernate: bool = False) -> str:
        """``StopInstances`` for one instance (``Hibernate`` when asked); its state name after the call.

        Never TerminateInstances: the action only ever stops (the IAM policy grants nothing else).
        """
        request: dict[str, Any] = {"InstanceIds": [instance_id]}
        if hibernate:
            request["Hibernate"] = True
        doc = self._call("ec2", region, "StopInstances", **request)
        for item in doc.get("StoppingInstances") or []:
            if item.get("InstanceId") == instance_id:
                return str((item.get("CurrentState") or {}).get("Name", ""))
        return ""

    def metric_points(self, region: str, queries: Sequence[dict], start: datetime, end: datetime,
                      period: int) -> dict[str, list[tuple[float, float]]]:
        """``(Unix time, value)`` per query id (``GetMetricData``, 500 queries a call, all pages).

        Args:
            queries: dicts with ``id``, ``namespace``, ``metric``, ``dims`` and optionally
                ``stat`` (default ``Average``; ``Maximum`` for "never above", ``Sum`` for bytes).
        """
        out: dict[str, list[tuple[float, float]]] = {q["id"]: [] for q in queries}
        for i in range(0, len(queries), 500):
            batch = [{"Id": q["id"], "ReturnData": True,
                      "MetricStat": {"Metric": {"Namespace": q["namespace"], "MetricName": q["metric"],
                                                "Dimensions": q["dims"]},
                                     "Period": period, "Stat": q.get("stat", "Average")}}
                     for q in queries[i:i + 500]]
            request: dict[str, Any] = {"MetricDataQueries": batch, "StartTime": start, "EndTime": end}
            for res in self._paged("cloudwatch", "GetMetricData", request, "MetricDataResults", "NextToken",
                                   MAX_PAGES, region=region):
                stamps = res.get("Timestamps") or []
                values = res.get("Values") or []
                out.setdefault(res.get("Id", ""), []).extend(
                    (t.timestamp(), float(v)) for t, v in zip(stamps, values) if isinstance(t, datetime))
        return out


def _naive(stamp: datetime) -> datetime:
    return stamp.replace(tzinfo=None) if isinstance(stamp, datetime) else datetime.min


def credentials_status() -> tuple[bool, str]:
    """Say whether boto3 finds credentials, for ``prtg-ai doctor`` (never prints them)."""
    try:
        import boto3
    except ImportError:
        return False, "boto3 is not installed"
    try:
        creds = boto3.session.Session().get_credentials()
    except Exception as exc:  # a broken profile file: say what, not the contents
        return False, f"credential lookup failed ({type(exc).__name__})"
    if creds is None:
        return False, "no AWS credentials found (environment, profile, or instance role)"
    return True, f"credentials found (source: {getattr(creds, 'method', 'unknown')})"


def permission_status(check_cost_explorer: bool = False) -> list[tuple[str, bool, str]]:
    """``prtg-ai doctor``: can this identity make the calls gpu_spend needs? Never prints a secret.

    STS GetCallerIdentity proves the credentials are valid (it needs no permission);
    EC2 DescribeInstances with ``DryRun`` answers "would succeed" or "not authorized"
    without doing anything. Cost Explorer has no dry run and each call costs USD 0.01,
    so it is only asked with ``check_cost_explorer``.
    """
    try:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        return [("AWS identity (gpu_spend)", False, "boto3 is not installed")]
    from botocore.config import Config

    config = Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 2})
    session = boto3.session.Session()
    region = session.region_name or "us-east-1"
    out: list[tuple[str, bool, str]] = []
    try:
        who = session.client("sts", region_name=region, config=config).get_caller_identity()
        out.append(("AWS identity (gpu_spend)", True, f"valid (account {who.get('Account', '?')})"))
    except (BotoCoreError, ClientError) as exc:
        return [("AWS identity (gpu_spend)", False, f"credentials rejected or unreachable ({_code(exc)})")]
    try:
        session.client("ec2", region_name=region, config=config).describe_instances(DryRun=True, MaxResults=5)
        out.append(("AWS ec2:DescribeInstances (gpu_spend fleet)", True, "allowed"))
    except ClientError as exc:
        code = _code(exc)
        ok = code == "DryRunOperation"
        out.append(("AWS ec2:DescribeInstances (gpu_spend fleet)", ok,
                    "allowed" if ok else f"denied ({code}); see installer/assets/iam/prtg-ai-gpu-spend-policy.json"))
    except BotoCoreError as exc:
        out.append(("AWS ec2:DescribeInstances (gpu_spend fleet)", False, f"unreachable ({_code(exc)})"))
    if not check_cost_explorer:
        out.append(("AWS ce:GetCostAndUsage (gpu_spend)", True,
                    "not checked: each Cost Explorer call costs USD 0.01 (prtg-ai doctor --check-cost-explorer asks once)"))
        return out
    try:
        from datetime import date, timedelta

        end = date.today()
        session.client("ce", region_name="us-east-1", config=config).get_cost_and_usage(
            TimePeriod={"Start": (end - timedelta(days=1)).isoformat(), "End": end.isoformat()},
            Granularity="DAILY", Metrics=["UnblendedCost"])
        out.append(("AWS ce:GetCostAndUsage (gpu_spend)", True, "allowed"))
    except (BotoCoreError, ClientError) as exc:
        out.append(("AWS ce:GetCostAndUsage (gpu_spend)", False,
                    f"denied or unreachable ({_code(exc)}); see installer/assets/iam/prtg-ai-gpu-spend-policy.json"))
    return out


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code") or type(exc).__name__)[:60]
    return type(exc).__name__
