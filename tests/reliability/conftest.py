"""Reliability suite plumbing: the ``reliability_slow`` marker, the tally fixture, the report file.

* ``reliability_slow`` tests are skipped unless ``PRTG_AI_RELIABILITY=full``
  (``make reliability``); the rest is the quick part CI runs with ``make test``.
* ``tally`` lets a test say how many cases it tried and faults it injected.
* With ``PRTG_AI_RELIABILITY_REPORT`` set (a file path, or ``1`` for
  ``benchmarks/results/reliability-<stamp>.json``), the session writes the counts per
  group: tests, cases tried, faults injected, failures. A test belongs to a group by its
  ``reliability`` marker, wherever it lives (the state-store faults in ``tests/unit``, the
  state concurrency test in ``tests/e2e``); ``report.py`` runs ``pytest -m reliability``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path

import pytest

from reliability.rel_support import FULL, MODE, REPO, TALLY, Tally, machine

REPORT_ENV = "PRTG_AI_RELIABILITY_REPORT"
PLUGIN_NAME = "prtg-ai-reliability-report"

# The report's groups, in its order: group -> whether each test of it is one injected fault
# when it records none. A test joins a group with ``@pytest.mark.reliability("<group>")``
# (registered in pyproject.toml); a bare ``@pytest.mark.reliability`` runs with the suite uncounted.
GROUPS: dict[str, bool] = {
    "bad-input matrix": False,
    "property tests (rates, trends)": False,
    "concurrency": False,
    "faults: NVML errors mid-sweep": True,
    "faults: AWS endpoint dying": True,
    "faults: state store (disk full, read-only, corrupt, locked)": True,
    "fuzzing: agent HTTP": False,
}
_HYPOTHESIS_CASES = re.compile(r"(\d+) passing, (\d+) failing, and (\d+) invalid")


def group_of(item) -> str | None:
    """The report group a collected test's ``reliability`` marker names (None: not counted)."""
    mark = item.get_closest_marker("reliability")
    if mark is None or not mark.args:
        return None
    name = mark.args[0]
    if name not in GROUPS:
        raise pytest.UsageError(f"{item.nodeid}: reliability group {name!r} is not one of {list(GROUPS)}")
    return name


class ReliabilityReport:
    """Collects each test's outcome and tally; writes the report at the end of the session."""

    def __init__(self, config):
        self.config = config
        self.outcomes: dict[str, str] = {}
        self.examples: dict[str, int] = {}
        self.xfails: dict[str, str] = {}
        self.groups: dict[str, str] = {}  # nodeid -> group, from the markers

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, config, items):
        for item in items:
            group = group_of(item)
            if group is not None:
                self.groups[item.nodeid] = group
        if FULL:
            return
        skip = pytest.mark.skip(reason="long reliability case: run with PRTG_AI_RELIABILITY=full (make reliability)")
        for item in items:
            if item.get_closest_marker("reliability_slow"):
                item.add_marker(skip)

    def pytest_runtest_logreport(self, report):
        if report.nodeid not in self.groups:
            return
        previous = self.outcomes.get(report.nodeid)
        if hasattr(report, "wasxfail") and report.skipped:
            self.outcomes[report.nodeid] = "xfailed"  # a known, reported bug (strict: fixing it fails the test)
            self.xfails[report.nodeid] = str(report.wasxfail).removeprefix("reason: ")
        elif report.failed:
            self.outcomes[report.nodeid] = "failed"
        elif report.skipped and previous not in ("failed", "xfailed"):
            self.outcomes[report.nodeid] = "skipped"
        elif report.when == "call" and report.passed and previous is None:
            self.outcomes[report.nodeid] = "passed"
        stats = report.__dict__.get("_hypothesis_stats")  # hypothesis' own per-test statistics text
        if stats and report.when == "teardown":
            self.examples[report.nodeid] = sum(int(a) + int(b) for a, b, _ in _HYPOTHESIS_CASES.findall(stats))

    def summary(self) -> dict:
        groups: dict[str, dict[str, int]] = {}
        for nodeid, outcome in self.outcomes.items():
            name = self.groups[nodeid]
            fault_each = GROUPS[name]
            g = groups.setdefault(name, {"tests": 0, "cases": 0, "faults": 0, "failures": 0, "skipped": 0,
                                         "known_bugs": 0})
            if outcome == "skipped":
                g["skipped"] += 1
                continue
            g["known_bugs"] += outcome == "xfailed"
            g["tests"] += 1
            tally = TALLY.get(nodeid, {"cases": 0, "faults": 0})
            g["cases"] += max(tally["cases"], self.examples.get(nodeid, 0), 1)
            g["faults"] += tally["faults"] or (1 if fault_each else 0)
            g["failures"] += outcome == "failed"
        groups = {name: groups[name] for name in GROUPS if name in groups}
        totals = {k: sum(g[k] for g in groups.values()) for k in ("tests", "cases", "faults", "failures", "skipped", "known_bugs")}
        bugs: dict[str, list[str]] = {}
        for nodeid, reason in self.xfails.items():
            bugs.setdefault(reason, []).append(nodeid)
        known = [{"test": ids[0].split("[")[0] + (f" ({len(ids)} cases)" if len(ids) > 1 else ""), "reason": reason}
                 for reason, ids in bugs.items()]
        tests = {nodeid: {"outcome": outcome, **TALLY.get(nodeid, {}),
                          **({"examples": self.examples[nodeid]} if nodeid in self.examples else {})}
                 for nodeid, outcome in sorted(self.outcomes.items())}
        return {"groups": groups, "totals": totals, "known_bugs": known, "tests": tests}

    def pytest_sessionfinish(self, session, exitstatus):
        target = os.environ.get(REPORT_ENV, "").strip()
        if not target or not self.outcomes:
            return
        now = dt.datetime.now(dt.timezone.utc)
        path = (REPO / "benchmarks" / "results" / f"reliability-{now:%Y%m%dT%H%M%SZ}.json"
                if target == "1" else Path(target))
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"when": now.strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(), "mode": MODE,
               "exitstatus": int(exitstatus), **self.summary()}
        path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"reliability report ({MODE}): {path}")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "reliability_slow: long reliability case, run only with PRTG_AI_RELIABILITY=full (make reliability)")
    if not config.pluginmanager.has_plugin(PLUGIN_NAME):
        config.pluginmanager.register(ReliabilityReport(config), PLUGIN_NAME)


@pytest.fixture
def tally(request) -> Tally:
    """Count what this test tried (``tally.case()``) and broke on purpose (``tally.fault()``)."""
    return Tally(request.node.nodeid)
