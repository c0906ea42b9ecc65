"""Device templates parse, and reference only sensors, wrappers and parameters the pack ships."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from prtg_ai.core import registry
from prtg_ai.core.params import resolve
from prtg_ai.build.templates import AGENT_PORT, GPU_COUNTS, SPEND_INTERVAL, render_templates
from prtg_ai_installer.layout import EXEXML, SCRIPTSXML
from prtg_ai_installer.wrappers import wrapper_name

REPO = Path(__file__).resolve().parents[2]
ODT = sorted((REPO / "device_templates").glob("*.odt"))
NODE_SENSORS = {"gpu_host", "gpu", "east_west", "checkpoint_volume", "node_security"}


def creates(path: Path) -> list[ET.Element]:
    root = ET.parse(path).getroot()
    assert root.tag == "devicetemplate" and root.get("id") == "custom" and root.get("name").startswith("prtg-ai ")
    assert [c.get("id") for c in root.findall("check")] == ["ping"]
    items = root.findall("create")
    ids = [c.get("id") for c in items]
    assert len(ids) == len(set(ids)) and all(i.startswith("prtgai_") for i in ids)
    for c in items:
        assert c.get("requires") == "ping" and c.get("displayname")
        data = {e.tag: (e.text or "") for e in c.find("createdata")}
        assert data["tags"].split()[0] == "prtgai"
        assert int(data["interval"]) >= 60 and data["priority"] in {"1", "2", "3", "4", "5"}
    return items


def test_every_family_and_size_is_committed():
    assert {p.name for p in ODT} == set(render_templates())
    assert len(ODT) == 2 * len(GPU_COUNTS) + 5


NODE_SETTINGS = {"path", "url"}  # node-specific: given to the agent (--sensor-defaults), never in a template


def _check_args(sensor: str, argv: list[str]) -> None:
    """The parameters in a template are ones the sensor declares and accepts, and no node-specific guess."""
    from prtg_ai.core.params import split_cli

    params = {p.name: p for p in registry.get(sensor).params}
    for name, values in split_cli(argv, tuple(params.values())).items():
        assert name not in NODE_SETTINGS, f"{sensor}: template guesses the node setting --{name}"
        for value in values:
            params[name].convert(value)


@pytest.mark.parametrize("gpus", GPU_COUNTS)
def test_http_agent_template(gpus):
    items = creates(REPO / "device_templates" / f"prtgai_gpu_node_http_{gpus}gpu.odt")
    seen = []
    for c in items:
        url = urlsplit(c.find("createdata/httpurl").text)
        assert (url.scheme, url.port) == ("http", AGENT_PORT) and url.hostname == "%host"
        match = re.fullmatch(r"/sensors/([a-z_]+)", url.path)
        sensor = match.group(1)
        assert sensor in registry.sensor_ids()
        _check_args(sensor, [f"--{k.replace('_', '-')}={v}" for k, v in parse_qsl(url.query)])
        tags = c.find("createdata/tags").text.split()
        assert tags == ["prtgai", sensor]
        seen.append((sensor, dict(parse_qsl(url.query)).get("gpu")))
    assert sorted(s for s, _ in seen if s == "gpu") == ["gpu"] * gpus
    assert sorted(int(g) for s, g in seen if s == "gpu") == list(range(gpus))
    assert {s for s, _ in seen} == NODE_SENSORS
    host = next(c for c in items if "/sensors/gpu_host" in c.find("createdata/httpurl").text)
    assert dict(parse_qsl(urlsplit(host.find("createdata/httpurl").text).query)) == {"expected_gpus": str(gpus)}


@pytest.mark.parametrize("gpus", GPU_COUNTS)
def test_ssh_template_runs_the_installed_wrappers(gpus):
    items = creates(REPO / "device_templates" / f"prtgai_gpu_node_ssh_{gpus}gpu.odt")
    wrappers = {wrapper_name(SCRIPTSXML, s): s for s in registry.sensor_ids()}
    sensors = []
    for c in items:
        assert c.get("kind") == "sshscriptxml"
        script = c.find("createdata/scriptname").text
        assert script in wrappers, f"{script} is not a wrapper the installer writes"
        params = (c.find("createdata/params").text or "").split()
        _check_args(wrappers[script], params)
        sensors.append(wrappers[script])
    assert sensors.count("gpu") == gpus and set(sensors) == NODE_SENSORS
    host = next(c for c in items if c.find("createdata/scriptname").text == wrapper_name(SCRIPTSXML, "gpu_host"))
    assert host.find("createdata/params").text == f"--expected-gpus {gpus}"


def test_aws_template():
    [item] = creates(REPO / "device_templates" / "prtgai_aws_gpu_account.odt")
    data = {e.tag: (e.text or "") for e in item.find("createdata")}
    assert item.get("kind") == "exexml"
    assert data["exefile"] == wrapper_name(EXEXML, "gpu_spend")
    assert int(data["interval"]) == SPEND_INTERVAL == 900
    assert data["tags"] == "prtgai gpu_spend"


@pytest.mark.parametrize("file, cloud, scope", [
    ("prtgai_azure_gpu_subscription.odt", "azure", "--subscription"),
    ("prtgai_gcp_gpu_project.odt", "gcp", "--billing-table"),
])
def test_other_cloud_spend_templates(file, cloud, scope):
    [item] = creates(REPO / "device_templates" / file)
    data = {e.tag: (e.text or "") for e in item.find("createdata")}
    assert item.get("kind") == "exexml" and data["exefile"] == wrapper_name(EXEXML, "gpu_spend")
    argv = data["exeparams"].split()
    assert argv[:2] == ["--cloud", cloud] and argv[2] == scope
    _check_args("gpu_spend", argv)
    assert int(data["interval"]) == SPEND_INTERVAL


def test_inference_template_polls_the_agent_with_baselines():
    [item] = creates(REPO / "device_templates" / "prtgai_inference_server.odt")
    url = urlsplit(item.find("createdata/httpurl").text)
    assert url.path == "/sensors/inference" and url.port == AGENT_PORT
    pairs = parse_qsl(url.query)
    assert "url" not in dict(pairs)  # the model server's URL is a node setting (--sensor-defaults)
    # The agent turns query pairs into options: the sensor must accept every one of them,
    # --baseline included (a runtime option every sensor takes).
    from prtg_ai.core.runtime import BASELINE

    declared = (*registry.get("inference").params, BASELINE)
    resolve(declared, ["--url=http://127.0.0.1:8000", *(f"--{k.replace('_', '-')}={v}" for k, v in pairs)], {})
    assert [v for k, v in pairs if k == "baseline"] == ["Requests Waiting", "Time To First Token p95"]


def test_k8s_template_reads_dcgm_exporter_through_the_agent():
    items = creates(REPO / "device_templates" / "prtgai_k8s_gpu_node.odt")
    seen = {}
    for item in items:
        url = urlsplit(item.find("createdata/httpurl").text)
        assert url.port == AGENT_PORT and url.hostname == "%host"
        sensor = url.path.rsplit("/", 1)[1]
        pairs = parse_qsl(url.query)
        assert dict(pairs)["source"] == "dcgm" and dict(pairs)["dcgm_url"] == "http://%host:9400/metrics"
        _check_args(sensor, [f"--{k.replace('_', '-')}={v}" for k, v in pairs])
        seen[sensor] = item.get("displayname")
    assert set(seen) == {"k8s_gpu", "gpu_host"}


def test_add_token_puts_the_token_in_every_http_url_url_encoded_and_xml_escaped():
    from prtg_ai.build.templates import add_token

    for name in ("prtgai_gpu_node_http_8gpu.odt", "prtgai_inference_server.odt"):
        text = add_token((REPO / "device_templates" / name).read_text(encoding="utf-8"), "a&b=c d")
        root = ET.fromstring(text.encode())
        urls = [e.text for e in root.iter("httpurl")]
        assert urls and all(dict(parse_qsl(urlsplit(u).query))["token"] == "a&b=c d" for u in urls)


def test_template_escapes_what_xml_reserves_and_parses():
    from prtg_ai.build.templates import odt_text

    hostile = 'a & b <c> "d"'
    text = odt_text(f"prtg-ai {hostile}", [{"id": "prtgai_x", "kind": "exexml", "name": hostile,
                                           "fields": [("exeparams", f"</exeparams>{hostile}")]}])
    assert 'name="prtg-ai a &amp; b &lt;c&gt; &quot;d&quot;"' in text
    assert "<exeparams>&lt;/exeparams&gt;a &amp; b &lt;c&gt; \"d\"</exeparams>" in text
    root = ET.fromstring(text.encode())
    [create] = root.findall("create")
    assert root.get("name") == f"prtg-ai {hostile}" and create.get("displayname") == hostile
    assert [(e.tag, e.text) for e in create.find("createdata")] == [("exeparams", f"</exeparams>{hostile}")]
