"""``serve --sensor-defaults``: node settings for requests; a request's own parameters win."""

from __future__ import annotations

import pytest

from prtg_ai.agent import defaults
from prtg_ai.core import registry


def test_parse_entries_from_options_and_the_environment():
    entries = defaults.env_entries('checkpoint_volume=--path "/data/my ckpt"; gpu_host=--expected-gpus 8\n'
                                   "inference=--url http://127.0.0.1:8000")
    parsed = defaults.parse(entries)
    assert parsed == {"checkpoint_volume": ["--path", "/data/my ckpt"], "gpu_host": ["--expected-gpus", "8"],
                      "inference": ["--url", "http://127.0.0.1:8000"]}


@pytest.mark.parametrize("entry, problem", [
    ("nosuch=--x 1", "no such sensor"),
    ("checkpoint_volume=--bogus 1", "Unknown option '--bogus'"),
    ("checkpoint_volume", 'expected SENSOR="--PARAM VALUE ..."'),
    ('checkpoint_volume=--path "/x', "No closing quotation"),
])
def test_bad_entries_fail_at_start(entry, problem):
    with pytest.raises(defaults.DefaultsError, match=problem):
        defaults.parse([entry])


def test_request_parameters_win_and_the_rest_of_the_defaults_apply():
    cls = registry.get("checkpoint_volume")
    node = ["--path", "/data/ckpt", "--window", "2h"]
    assert defaults.merge(cls, node, []) == ["--path=/data/ckpt", "--window=2h"]
    assert defaults.merge(cls, node, ["--path=/other"]) == ["--path=/other", "--window=2h"]


def test_missing_required_parameter_names_the_exact_line():
    cls = registry.get("checkpoint_volume")
    text = defaults.missing_text(cls, [])
    assert 'Add --sensor-defaults checkpoint_volume="--path DIR" to the agent' in text
    assert defaults.missing_text(cls, ["--path=/x"]) is None


def test_paths_the_node_configured_are_served_on_a_network_listener_and_nothing_else(tmp_path):
    """A network listener without --allow-path serves no client path, but the folder the node's
    administrator configured (--sensor-defaults) is served: the real checkpoint_volume scan runs."""
    import json

    from prtg_ai.agent.app import AgentApp
    from prtg_ai.agent.auth import Authenticator

    ckpt = tmp_path / "ckpt"
    (ckpt / "step-1").mkdir(parents=True)
    (ckpt / "step-1" / "model.pt").write_bytes(b"x" * 4096)
    other = tmp_path / "other"
    other.mkdir()
    node = defaults.parse([f"checkpoint_volume=--path {ckpt}"])
    app = AgentApp(Authenticator(tokens=["t" * 24]), tmp_path / "state", env={}, cache_ttl=0,
                   allowed_paths=(), sensor_defaults=node)
    configured = json.loads(app.sensor_body("checkpoint_volume", []))["prtg"]
    assert "error" not in configured, configured
    refused = json.loads(app.sensor_body("checkpoint_volume", [("path", str(other))]))["prtg"]
    assert refused["error"] == 1 and "--allow-path" in refused["text"] and str(other) not in refused["text"]
