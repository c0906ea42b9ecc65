"""Attack 2: reading internal pages back through PRTG text, and using the agent as a port scanner.

Real parts: a loopback server imitating an instance-metadata service (role name,
credentials document, user data), a model server whose probe errors carry a JSON
message, a closed port, a server that never answers, and the real agent.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from security.sec_support import (
    METADATA_PAGES, METADATA_ROLE, METADATA_SECRET, Recorder, attack, free_port, leak_check, metadata_route, ok,
    text_of,
)
from fakes.inference_server import FakeModelServer

PAGE = (Path(__file__).resolve().parents[1] / "testcases" / "inference" / "vllm" / "metrics.1.prom").read_text()
# Every distinctive word the fake metadata service hands out.
SECRETS = [METADATA_ROLE, METADATA_SECRET, "ASIAEXAMPLEKEYID0000", "IQoJb3JpZ2luX2VjEXAMPLETOKEN",
           "userdata-secret-4242", "DB_PASSWORD", "AWS-HMAC", "Success"]


def test_02_metadata_pages_are_never_read_back(agent):
    with Recorder(metadata_route) as imds, FakeModelServer(page=PAGE) as legit:
        a = agent(sensors=["inference"])
        for path in METADATA_PAGES:
            for params in ({"url": legit.url, "metrics_url": imds.url + path}, {"url": imds.url + path.rstrip("/")},
                           {"url": imds.url, "metrics_url": imds.url + path, "kind": "vllm"}):
                attack()
                _, raw = a.sensor("inference", params)
                for secret in SECRETS:
                    if secret in json.dumps(params):
                        continue  # the client's own URL names it (a role path): not read from the page
                    leak_check(secret not in raw, f"{secret!r} of the metadata page reached PRTG via {params}")
        assert imds.seen, "the fake metadata service was really fetched (it sits on allowed loopback)"
        doc, _ = a.sensor("inference", {"url": legit.url})
        assert ok(doc), text_of(doc)


def test_02_link_local_and_metadata_addresses_are_always_refused(agent):
    a = agent(sensors=["inference"], allow_urls=["0.0.0.0/0", "::/0"])  # even an operator allowing everything
    for url in ("http://169.254.169.254", "http://169.254.169.254:80/latest/meta-data/",
                "http://[fe80::1]:8000", "http://100.100.100.200", "http://[fd00:ec2::254]",
                "http://[::ffff:169.254.169.254]"):
        attack()
        doc, _ = a.sensor("inference", {"url": url})
        assert not ok(doc) and "not a destination" in text_of(doc), (url, text_of(doc))
        attack()
        doc, _ = a.sensor("inference", {"url": "http://127.0.0.1:9", "metrics_url": url})
        assert not ok(doc) and "not a destination" in text_of(doc), (url, text_of(doc))


def test_02_probe_error_bodies_are_not_echoed(agent):
    with FakeModelServer(page=PAGE, fault="http500") as server:
        a = agent(sensors=["inference"])
        attack()
        doc, raw = a.sensor("inference", {"url": server.url, "kind": "openai", "model": "m"})
        leak_check("CUDA out of memory" not in raw, "the remote error message was echoed")
        assert ok(doc) and "Probe" in raw


def _shape(text: str) -> str:
    return re.sub(r"127\.0\.0\.1:\d+", "HOST", text)


def test_02_outcomes_do_not_make_a_port_scanner(agent):
    with Recorder(lambda path: (404, {}, b"nothing")) as not_found, \
            Recorder(lambda path: (200, {}, b"<html>admin console</html>\n{bad")) as not_metrics, \
            Recorder(lambda path: "silent") as silent:
        closed = f"http://127.0.0.1:{free_port()}"
        a = agent(sensors=["inference"])
        texts = []
        for url in (closed, not_found.url, not_metrics.url, silent.url):
            attack()
            doc, raw = a.sensor("inference", {"url": url, "timeout": "1s"})
            assert not ok(doc)
            leak_check("admin console" not in raw, "a fetched page was echoed")
            texts.append(_shape(text_of(doc)))
        leak_check(len(set(texts)) == 1, f"outcomes are distinguishable: {texts}")
        for url in (closed, silent.url):
            attack()
            doc, _ = a.sensor("inference", {"url": url, "kind": "openai", "model": "m", "timeout": "1s"})
            probe = {c["channel"]: c["value"] for c in doc["prtg"].get("result", [])}.get("Probe Outcome")
            leak_check(probe in (None, 2), f"the probe outcome tells refused from silent: {probe}")
