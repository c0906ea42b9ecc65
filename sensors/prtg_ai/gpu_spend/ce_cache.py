"""On-disk caches of the ``gpu_spend`` sensor, shared by every sensor on the host.

PRTG starts a new process per scan and every Cost Explorer request costs $0.01
(each page too), so what AWS answered is kept in the state folder:

* ``identity``: which account a set of credentials belongs to (STS), so sensors
  with different profiles for the same account share one cost cache;
* ``cost``: Cost Explorer daily amounts, forecast and budgets per account and
  query, refreshed at most every ``--ce-refresh-hours``;
* ``live``: the fleet summary (instances, GPUs, burn, idle burn) per sensor
  configuration, refreshed every ``--live-refresh``;
* ``catalog``: instance-type GPU counts (a week) and on-demand prices (a day) per region.

Each file is a ``StateSession`` file (``core/state.py``): written under a
cross-process lock, atomically (temp file + rename), set aside when corrupt. A
scan that finds its files fresh reads them without the lock and writes nothing:
that path never imports boto3 and costs a few file reads. A refresh takes the
lock, re-reads (another process may have refreshed meanwhile) and only then asks AWS.

Failed refreshes are recorded with a back-off, so a throttled or unreachable
endpoint is retried after 15 min, 30 min, ... (never more often than the refresh
interval would), not on every scan.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from prtg_ai.core.state import FORMAT, VERSION, StateSession, instance_file_stem, read_state_bytes, secure_folder

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SENSOR_ID = "gpu_spend"
# A refresh holds the lock across AWS calls (timeouts a few seconds each), so waiters get longer
# than the state store's default before they give up and serve what is on disk.
REFRESH_LOCK_TIMEOUT_S = 30.0
# Cost Explorer requests per account and UTC day, over every query of every sensor on the
# host ($0.40 a day at $0.01 each): what a day of hourly refreshes of one query needs, with room
# for a few configurations; distinct agent parameters cannot buy more.
CE_DAILY_REQUEST_CAP = 40
# What one refresh may send (GetCostAndUsage and, once a day, GetCostForecast): a refresh
# starts only while this much of the cap is left, so the cap holds for every combination.
CE_REQUESTS_PER_REFRESH = 2
# Clock steps back by more than this make cached data count as stale (refetched once).
CLOCK_SKEW_S = 300.0
# Environment that decides which credentials and endpoints boto3 uses: part of the
# identity of a cache, so a test endpoint or another key never reads a real account's cache.
CREDENTIAL_ENV = (
    "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
)


def credential_fingerprint(env: Mapping[str, str], profile: str | None) -> str:
    """A short checksum naming the credentials and endpoints boto3 will use, without calling AWS.

    Only the access key *id* enters it (never the secret), and the checksum, not the
    id, is what lands in file names. It names a cache; it is not a security boundary.
    """
    parts = {k: env.get(k, "") for k in CREDENTIAL_ENV}
    parts["profile"] = profile or ""
    parts["endpoints"] = sorted((k, v) for k, v in env.items() if k.startswith("AWS_ENDPOINT_URL"))
    # The state store's checksum naming (no hashlib/OpenSSL import on the fast path).
    return instance_file_stem("cred", parts).split("-", 1)[1]


class SharedCache:
    """One cache file in the state folder, named by ``identity``."""

    def __init__(self, directory, identity: dict[str, Any]):
        # Strings: a scan answered from this cache never imports pathlib.
        self.directory = secure_folder(os.fspath(directory))[0] or os.fspath(directory)
        self.identity = identity
        self.path = os.path.join(self.directory, f"{instance_file_stem(SENSOR_ID, identity)}.json")

    def peek(self) -> dict[str, Any] | None:
        """The cached data, read without the lock (files are replaced atomically); None when absent or unusable."""
        try:
            doc = json.loads(read_state_bytes(self.path).decode("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            return None  # the locked refresh path sets a corrupt file aside and says so
        if (not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION
                or doc.get("sensor") != SENSOR_ID or not isinstance(doc.get("data"), dict)):
            return None
        return doc["data"]

    def session(self) -> StateSession:
        """A locked read-modify-write session on this file (use as a context manager)."""
        return StateSession(self.directory, SENSOR_ID, self.identity, max_samples=1,
                            lock_timeout=REFRESH_LOCK_TIMEOUT_S)


def age_s(fetched_at: float | None, now: float) -> float | None:
    """Seconds since ``fetched_at``; never negative (a clock step back reads as 0)."""
    if fetched_at is None:
        return None
    return max(0.0, now - float(fetched_at))


def is_fresh(data: Mapping[str, Any] | None, ttl_s: float, now: float) -> bool:
    """True when ``data`` was fetched less than ``ttl_s`` ago (and not from the far future)."""
    if not data or data.get("fetched_at") is None:
        return False
    delta = now - float(data["fetched_at"])
    return -CLOCK_SKEW_S <= delta < ttl_s


def next_attempt_at(data: Mapping[str, Any] | None, base_s: float, cap_s: float) -> float | None:
    """When a failed refresh may be tried again (exponential back-off), or None after no failure."""
    failure = (data or {}).get("failure")
    if not failure:
        return None
    from prtg_ai.maths.backoff import backoff_s  # only after a failure: a cache hit never needs it

    return float(failure["at"]) + backoff_s(int(failure.get("count", 1)), base_s, cap_s)


def in_backoff(data: Mapping[str, Any] | None, base_s: float, cap_s: float, now: float) -> bool:
    when = next_attempt_at(data, base_s, cap_s)
    return when is not None and float((data or {})["failure"]["at"]) - CLOCK_SKEW_S <= now < when


def due(data: Mapping[str, Any] | None, ttl_s: float, base_s: float, cap_s: float, now: float) -> bool:
    """Refresh when stale or after a failure, unless the back-off or the cloud's ``Retry-After`` says wait.

    ``Retry-After`` is kept as the failure's ``not_before`` (the Azure and Google Cloud engine sets it).
    """
    failure = (data or {}).get("failure")
    if in_backoff(data, base_s, cap_s, now) or now < float((failure or {}).get("not_before") or 0.0):
        return False
    return bool(failure) or not is_fresh(data, ttl_s, now)


def record_failure(data: dict[str, Any], now: float, kind: str, text: str) -> None:
    """Remember a failed refresh (kind: denied, throttled, unreachable, credentials, failed)."""
    previous = data.get("failure") or {}
    data["failure"] = {"at": now, "count": int(previous.get("count", 0)) + 1, "kind": kind, "text": text[:600]}


def clear_failure(data: dict[str, Any]) -> None:
    data.pop("failure", None)


def count_requests(data: dict[str, Any], day: str, n: int) -> int:
    """Add ``n`` Cost Explorer requests to today's count (a new UTC day starts at 0); return today's total."""
    counter = data.get("requests") or {}
    if counter.get("day") != day:
        counter = {"day": day, "count": 0}
    counter["count"] = int(counter.get("count", 0)) + int(n)
    counter["total"] = int((data.get("requests") or {}).get("total", 0)) + int(n)
    data["requests"] = counter
    return counter["count"]


def requests_today(data: Mapping[str, Any] | None, day: str) -> int:
    counter = (data or {}).get("requests") or {}
    return int(counter.get("count", 0)) if counter.get("day") == day else 0
