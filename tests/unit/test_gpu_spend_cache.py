"""The shared gpu_spend caches: naming, lock-free reads, freshness, back-off, request counting."""

from __future__ import annotations

from pathlib import Path

from prtg_ai.gpu_spend import ce_cache
from prtg_ai.gpu_spend.ce_cache import SharedCache


def test_fingerprint_names_credentials_and_endpoints_but_never_holds_the_secret():
    base = {"AWS_ACCESS_KEY_ID": "AKIAONE", "AWS_SECRET_ACCESS_KEY": "s3cr3t-value"}
    fp = ce_cache.credential_fingerprint(base, None)
    assert len(fp) == 16 and "s3cr3t" not in fp
    # The secret does not enter the hash: rotating it keeps the cache.
    assert ce_cache.credential_fingerprint({**base, "AWS_SECRET_ACCESS_KEY": "other"}, None) == fp
    assert ce_cache.credential_fingerprint({**base, "AWS_ACCESS_KEY_ID": "AKIATWO"}, None) != fp
    assert ce_cache.credential_fingerprint({**base, "AWS_ENDPOINT_URL": "http://127.0.0.1:1"}, None) != fp
    assert ce_cache.credential_fingerprint({**base, "AWS_ENDPOINT_URL_COST_EXPLORER": "http://x"}, None) != fp
    assert ce_cache.credential_fingerprint(base, "prod") != fp


def test_shared_cache_round_trip_and_lock_free_peek(tmp_path):
    cache = SharedCache(tmp_path, {"kind": "cost", "account": "123456789012"})
    assert cache.peek() is None
    with cache.session() as state:
        state.data.update({"fetched_at": 100.0, "daily": {"2026-09-20": {"usd": 1.5}}})
    assert cache.peek() == {"fetched_at": 100.0, "daily": {"2026-09-20": {"usd": 1.5}}}
    # Same identity from another sensor instance: the same file.
    assert SharedCache(tmp_path, {"account": "123456789012", "kind": "cost"}).peek()["fetched_at"] == 100.0
    assert SharedCache(tmp_path, {"kind": "cost", "account": "999999999999"}).peek() is None


def test_peek_ignores_corrupt_or_foreign_files_and_the_session_sets_them_aside(tmp_path):
    cache = SharedCache(tmp_path, {"kind": "live"})
    tmp_path.mkdir(exist_ok=True)
    Path(cache.path).write_text('{"format": "prtg-ai-state", "version": 1, "sensor": "gpu", "data": {}, "samples": []}')
    assert cache.peek() is None  # written for another sensor
    Path(cache.path).write_bytes(b"\x00\xff{")
    assert cache.peek() is None
    with cache.session() as state:
        assert state.data == {}
        assert any("set it aside" in n for n in state.notes)
    assert Path(cache.path).with_suffix(".corrupt").exists()


def test_freshness_tolerates_small_clock_steps_only():
    data = {"fetched_at": 10_000.0}
    assert ce_cache.is_fresh(data, 3600, 10_000.0 + 3599)
    assert not ce_cache.is_fresh(data, 3600, 10_000.0 + 3600)
    assert ce_cache.is_fresh(data, 3600, 10_000.0 - 200)        # NTP nudge
    assert not ce_cache.is_fresh(data, 3600, 10_000.0 - 4000)   # clock jumped back: refetch once
    assert not ce_cache.is_fresh(None, 3600, 0) and not ce_cache.is_fresh({}, 3600, 0)
    assert ce_cache.age_s(10_000.0, 9_000.0) == 0.0 and ce_cache.age_s(None, 1.0) is None


def test_backoff_doubles_up_to_the_cap():
    data: dict = {}
    assert ce_cache.next_attempt_at(data, 900, 21600) is None
    delays = []
    for _ in range(7):
        ce_cache.record_failure(data, 1000.0, "throttled", "AWS throttled")
        delays.append(ce_cache.next_attempt_at(data, 900, 21600) - 1000.0)
    assert delays == [900, 1800, 3600, 7200, 14400, 21600, 21600]
    assert ce_cache.in_backoff(data, 900, 21600, 1000.0 + 21599)
    assert not ce_cache.in_backoff(data, 900, 21600, 1000.0 + 21600)
    ce_cache.clear_failure(data)
    assert not ce_cache.in_backoff(data, 900, 21600, 1000.0)


def test_request_counter_restarts_each_utc_day_and_keeps_a_total():
    data: dict = {}
    assert ce_cache.count_requests(data, "2026-09-21", 2) == 2
    assert ce_cache.count_requests(data, "2026-09-21", 1) == 3
    assert ce_cache.requests_today(data, "2026-09-21") == 3
    assert ce_cache.requests_today(data, "2026-09-22") == 0
    assert ce_cache.count_requests(data, "2026-09-22", 1) == 1
    assert data["requests"]["total"] == 4
