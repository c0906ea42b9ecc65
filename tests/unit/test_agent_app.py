"""The agent's WSGI app called directly (no socket): routing, parameters, caching, secrets."""

from __future__ import annotations

import io
import json

import pytest

from prtg_ai.agent.app import AgentApp, BadRequest, query_to_argv
from prtg_ai.agent.auth import Authenticator
from prtg_ai.checkpoint_volume.checkpoint_volume import CheckpointVolumeSensor
from prtg_ai.prtg.validate import validate

TOKEN = "unit-token-12345678"


def call(app, path, query="", method="GET", **headers):
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "REMOTE_ADDR": "127.0.0.1",
               "wsgi.url_scheme": "http", "HTTP_HOST": "node:9705", "wsgi.input": io.BytesIO()}
    environ.update({"HTTP_" + k.upper(): v for k, v in headers.items()})
    seen = {}

    def start_response(status, hdrs):
        seen["status"], seen["headers"] = status, dict(hdrs)

    body = b"".join(app(environ, start_response)).decode()
    return int(seen["status"].split()[0]), seen["headers"], body


@pytest.fixture
def app(tmp_path):
    return AgentApp(Authenticator(tokens=[TOKEN]), tmp_path / "state", env={}, cache_ttl=30)


def test_query_maps_to_declared_params_only():
    pairs = [("path", "/data"), ("stall-after", "2h"), ("Pattern", "a*"), ("pattern", "--b*")]
    assert query_to_argv(CheckpointVolumeSensor, pairs) == [
        "--path=/data", "--stall-after=2h", "--pattern=a*", "--pattern=--b*"]
    with pytest.raises(BadRequest, match="Unknown parameter 'sys_root'"):
        query_to_argv(CheckpointVolumeSensor, [("sys_root", "/")])


def test_allow_path_confines_path_parameters(tmp_path):
    allowed = tmp_path / "checkpoints"
    (allowed / "job1").mkdir(parents=True)
    outside = tmp_path / "secrets"
    outside.mkdir()
    (allowed / "escape").symlink_to(outside)
    app = AgentApp(Authenticator(tokens=[TOKEN]), tmp_path / "state", env={}, allowed_paths=[allowed])
    ok = call(app, "/sensors/checkpoint_volume", f"path={allowed / 'job1'}&token={TOKEN}")
    assert ok[0] == 200 and "error" not in json.loads(ok[2])["prtg"]
    for bad in (outside, allowed / "job1" / ".." / ".." / "secrets", allowed / "escape", "/etc"):
        status, _, body = call(app, "/sensors/checkpoint_volume", f"path={bad}&token={TOKEN}")
        doc = json.loads(body)
        assert status == 200 and doc["prtg"]["error"] == 1 and validate(body) == []
        assert "--allow-path" in doc["prtg"]["text"] and str(outside) not in doc["prtg"]["text"]


def test_runtime_options_pass_through_the_agent(app, tmp_path):
    """?baseline=CHANNEL reaches the runtime as --baseline, as on the command line."""
    assert query_to_argv(CheckpointVolumeSensor, [("baseline", "Used Space")]) == ["--baseline=Used Space"]
    folder = tmp_path / "ck"
    folder.mkdir()
    status, _, body = call(app, "/sensors/checkpoint_volume", f"path={folder}&baseline=Used%20Space&token={TOKEN}")
    doc = json.loads(body)
    assert status == 200 and validate(body) == []
    names = {ch["channel"]: ch["value"] for ch in doc["prtg"]["result"]}
    assert names["Used Space Baseline State"] == 0 and "Used Space Deviation" in names  # learning at first


def test_sensor_result_is_cached_and_order_insensitive(app, tmp_path):
    folder = tmp_path / "ck"
    folder.mkdir()
    q1 = f"path={folder}&window=2h&token={TOKEN}"
    q2 = f"token={TOKEN}&window=2h&path={folder}"
    s1, h1, b1 = call(app, "/sensors/checkpoint_volume", q1)
    s2, _, b2 = call(app, "/sensors/checkpoint_volume", q2)
    assert (s1, s2) == (200, 200) and b1 == b2 and validate(b1) == []
    assert h1["Content-Type"] == "application/json" and h1["Content-Length"] == str(len(b1.encode()))
    assert app.cache.computed == 1
    call(app, "/sensors/checkpoint_volume", f"path={folder}&window=3h&token={TOKEN}")
    assert app.cache.computed == 2


def test_statuses_and_bodies(app, tmp_path):
    assert call(app, "/sensors/checkpoint_volume")[0] == 401
    status, headers, body = call(app, "/sensors/checkpoint_volume", f"token={TOKEN}", method="DELETE")
    assert status == 405 and validate(body) == []
    status, _, body = call(app, "/sensors/checkpoint_volume", f"token={TOKEN}&path={tmp_path}", method="HEAD")
    assert status == 200 and body == ""
    status, _, body = call(app, "/sensors/checkpoint_volume", f"token={TOKEN}&path={tmp_path}&format=xml")
    assert status == 200 and "format='xml'" in json.loads(body)["prtg"]["text"]
    many = "&".join(f"p{i}=1" for i in range(100))
    status, _, body = call(app, "/sensors/checkpoint_volume", f"token={TOKEN}&{many}")
    assert status == 200 and "Too many query parameters" in body and validate(body) == []
    status, _, body = call(app, "/health")
    assert status == 200 and json.loads(body)["status"] == "ok" and TOKEN not in body


def test_agent_secrets_are_scrubbed_from_sensor_errors(app):
    # The token used as a parameter value would echo back in the error text.
    status, _, body = call(app, "/sensors/checkpoint_volume", f"token={TOKEN}&path=/nonexistent/{TOKEN}")
    assert status == 200 and validate(body) == []
    doc = json.loads(body)
    assert doc["prtg"]["error"] == 1 and TOKEN not in body and "***" in doc["prtg"]["text"]


def test_internal_error_still_answers_prtg_json(app, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("bug")

    monkeypatch.setattr(app, "dispatch", broken)
    status, _, body = call(app, "/sensors/checkpoint_volume", f"token={TOKEN}")
    assert status == 200 and validate(body) == [] and "Internal error" in body and "bug" not in body


def test_index_escapes_host_header(app):
    status, headers, body = call(app, "/", f"token={TOKEN}", host="<script>x</script>")
    assert status == 200 and "<script>x" not in body and "&lt;script&gt;" in body
    assert "checkpoint_volume" in body
