"""Attack 7: running up the Cost Explorer bill with distinct gpu_spend parameters through the agent.

Real parts: boto3 over HTTP to moto's server on 127.0.0.1 behind the counting front
of ``tests/fakes/aws_moto.py`` (every Cost Explorer request is counted where it
arrives), and the real agent serving gpu_spend (opt-in).
"""

from __future__ import annotations

import itertools

import pytest

pytest.importorskip("moto.server")

from fakes.aws_moto import aws, front, moto_server  # noqa: E402,F401 - fixtures reused
from prtg_ai.gpu_spend import spend_model as sm  # noqa: E402
from prtg_ai.gpu_spend.ce_cache import CE_DAILY_REQUEST_CAP  # noqa: E402
from security.sec_support import attack, leak_check, text_of  # noqa: E402


def test_07_distinct_parameters_cannot_exceed_the_daily_cap(agent, aws):
    a = agent(env=dict(aws["env"]), sensors=["gpu_spend"])
    doc, _ = a.sensor("gpu_spend", {})
    assert "error" not in doc["prtg"], text_of(doc)  # the legitimate poll
    combos = [",".join(c) for n in (1, 2) for c in itertools.combinations(sm.GPU_FAMILIES[:8], n)][:40]
    for families in combos:
        attack()
        for _ in range(2):
            a.sensor("gpu_spend", {"family": families, "ce_refresh_hours": "1"})
    sent = aws["front"].ce_requests()
    print(f"\n{len(combos)} distinct family lists, {2 * len(combos)} polls: {sent} Cost Explorer requests "
          f"(cap {CE_DAILY_REQUEST_CAP})")
    leak_check(sent <= CE_DAILY_REQUEST_CAP, f"{sent} Cost Explorer requests, above the daily cap")
    assert sent >= CE_DAILY_REQUEST_CAP - 2  # the cap, not something else, is what stopped them
    doc, _ = a.sensor("gpu_spend", {})  # still answers (from its cache), with the reason
    assert "error" not in doc["prtg"], text_of(doc)


def test_07_unknown_families_are_refused_for_agent_clients(agent, aws):
    a = agent(env=dict(aws["env"]), sensors=["gpu_spend"])
    for value in ("zz9", "p5,zz1", "m5"):
        attack()
        doc, _ = a.sensor("gpu_spend", {"family": value})
        assert doc["prtg"].get("error") == 1 and "family" in text_of(doc)
    leak_check(aws["front"].ce_requests() == 0, "an unknown family was queried")
