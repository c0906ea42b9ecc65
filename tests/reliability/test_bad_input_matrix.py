"""Bad-input matrix: every sensor x every parameter x every kind of bad value.

Each case must give valid PRTG JSON (an error that names the problem, or a
result), no traceback, no secret, in bounded time. Cases run in-process through
the same guarded runtime ``prtg-ai run`` uses; AWS is pointed at a closed port on
127.0.0.1 so nothing leaves the machine.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from prtg_ai.core import registry
from prtg_ai.core.context import Context
from prtg_ai.core.runtime import execute
from prtg_ai.prtg.validate import validate

pytestmark = pytest.mark.reliability("bad-input matrix")

SECRET = "AKIAMATRIXSECRET123456"
HOSTILE = {
    "traversal": "../../../../etc/passwd",
    "windows traversal": "..\\..\\Windows\\System32\\config\\SAM",
    "shell substitution": "$(touch /tmp/prtgai-matrix-pwned)",
    "shell chain": "; rm -rf / #",
    "backticks": "`reboot`",
    "format string": "%s%s%n%x",
    "markup": "<script>alert(1)</script>",
    "sql": "' OR 1=1 --",
    "one megabyte": "A" * 1_000_000,
    "non-utf8": "\udcff\udcfe",
    "nul": "a\x00b",
    "newlines": "x\r\nInjected: header",
    "empty": "",
    "unicode": "ÄÖÜ-😀-名前",
    "secret echo": SECRET,
}
CASES: list[tuple[str, str, str, list[str]]] = []
# node_security probes every exposed listener of the host it runs on: the matrix keeps it off
# this machine's own services (its probing has its own tests against listeners they start).
SAFE_ARGS = {"node_security": ["--probe=no"]}
COUNTED: dict[str, int] = {}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _valid_args(sensor_cls, tmp: Path) -> dict[str, str]:
    """A valid value for each required parameter (so one bad parameter is tested at a time)."""
    values = {}
    for p in sensor_cls.params:
        if not p.required:
            continue
        if p.kind == "path":
            values[p.name] = str(tmp)
        elif p.kind in ("int", "float"):
            values[p.name] = str(int(p.minimum or 0) if p.kind == "int" else (p.minimum or 0))
        elif p.kind == "duration":
            values[p.name] = f"{int(p.minimum or 3600)}s"
        elif p.kind == "choice":
            values[p.name] = p.choices[0]
        else:
            values[p.name] = "0"
    return values


def _bad_values(p) -> dict[str, str]:
    bad: dict[str, str] = {}
    if p.kind in ("int", "float", "duration"):
        bad["wrong type"] = "twelve"
        bad["infinity"] = "inf"
        if p.minimum is not None:
            below = p.minimum - 1 if p.kind != "duration" else p.minimum / 2
            if p.kind == "duration" and p.minimum <= 0:
                below = -1  # not even a duration
            bad["below minimum"] = f"{below:g}" + ("s" if p.kind == "duration" else "")
        if p.maximum is not None:
            bad["above maximum"] = str(p.maximum * 10) + ("s" if p.kind == "duration" else "")
    if p.kind == "flag":
        bad["wrong type"] = "maybe"
    if p.kind == "choice":
        bad["not a choice"] = "definitely-not-a-choice"
    if p.kind == "path":
        bad["nonexistent"] = "/nonexistent/prtg-ai/matrix"
    bad.update(HOSTILE)
    return bad


def _cases():
    for sid in registry.sensor_ids():
        cls = registry.get(sid)
        for p in cls.params:
            if p.required:
                yield sid, p.name, "missing", None
            for label, value in _bad_values(p).items():
                yield sid, p.name, label, value
        yield sid, "-", "unknown option", "--no-such-option"
        yield sid, "-", "stray argument", "stray"
        yield sid, "-", "broken PSA JSON", "{not json"


ALL_CASES = list(_cases())


@pytest.fixture(scope="module")
def matrix_env():
    port = _closed_port()
    return {
        "AWS_ACCESS_KEY_ID": "AKIAMATRIXKEYID",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@pytest.mark.parametrize("sensor, param, label, value", ALL_CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in ALL_CASES])
def test_bad_input(sensor, param, label, value, tmp_path, matrix_env):
    cls = registry.get(sensor)
    args = _valid_args(cls, tmp_path)
    if label == "missing":
        args.pop(param)
    argv: list[str] = []
    for name, v in args.items():
        argv += ["--" + name.replace("_", "-"), v]
    if param == "-":
        argv = [value] if label == "broken PSA JSON" else argv + [value]
    elif label != "missing":
        argv = [a for a in argv]
        option = "--" + param.replace("_", "-")
        if option in argv:
            i = argv.index(option)
            argv[i + 1] = value
        else:
            argv += [option, value]
    safe = [a for a in SAFE_ARGS.get(sensor, []) if not a.startswith("--" + param.replace("_", "-"))]
    if label != "broken PSA JSON":
        argv = safe + argv
    ctx = Context(state_dir=tmp_path / "state", env=dict(matrix_env))
    started = time.monotonic()
    outcome = execute(sensor, argv, ctx)
    elapsed = time.monotonic() - started
    assert validate(outcome.text) == [], outcome.text
    assert "Traceback" not in outcome.text
    assert SECRET not in outcome.text
    assert not Path("/tmp/prtgai-matrix-pwned").exists()
    assert elapsed < 30, f"{sensor} took {elapsed:.1f}s on bad input"
    doc = json.loads(outcome.text)
    if label in ("missing", "wrong type", "below minimum", "above maximum", "not a choice", "nul",
                 "one megabyte", "unknown option", "stray argument", "broken PSA JSON", "infinity"):
        assert doc["prtg"].get("error") == 1, f"{label} was accepted: {outcome.text[:300]}"
        if param != "-":
            assert "--" + param.replace("_", "-") in doc["prtg"]["text"], doc["prtg"]["text"]
