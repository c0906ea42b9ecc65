"""Reliability suite plumbing: the ``reliability_slow`` marker, the tally fixture, the report file.

* ``reliability_slow`` tests are skipped unless ``PRTG_AI_RELIABILITY=full``
  (``make reliability``); the rest is the quick part CI runs with ``make test``.
* ``tally`` lets a test say how many cases it tried and faults it injected.
* With ``PRTG_AI_RELIABILITY_REPORT`` set (a file path, or ``1`` for
  ``benchmarks/results/reliability-<stamp>.json``), the session writes the counts per
  group: tests, cases tried, faults injected, failures. The plugin sees every test of
  the session, so the state-store fault tests in ``tests/unit`` and the state
  concurrency test in ``tests/e2e`` are counted when ``make reliability`` names them.
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

# (group, nodeid prefix, whether each test of it is one injected fault when it records none)
GROUPS: list[tuple[str, str, bool]] = [
    ("bad-input matrix", "tests/reliability/test_bad_input_matrix.py", False),
    ("property tests (rates, trends)", "tests/reliability/test_properties.py", False),
    ("property tests (rates, trends)", "tests/unit/test_trend_and_counters.py", False),
    ("concurrency", "tests/reliability/test_concurrency.py", False),
    ("concurrency", "tests/e2e/test_state_concurrency.py", False),
    ("faults: NVML errors mid-sweep", "tests/reliability/test_faults_nvml.py", True),
    ("faults: AWS endpoint dying", "tests/reliability/test_faults_aws.py", True),
    ("faults: state store (disk full, read-only, corrupt, locked)",
     "tests/unit/test_state_store.py::test_bad_state_files_are_set_aside", True),
    ("faults: state store (disk full, read-only, corrupt, locked)",
     "tests/unit/test_state_store.py::test_unreadable_state_file", True),
    ("faults: state store (disk full, read-only, corrupt, locked)",
     "tests/unit/test_state_store.py::test_lock_held_elsewhere", True),
    ("faults: state store (disk full, read-only, corrupt, locked)",
     "tests/unit/test_state_store.py::test_disk_full", True),
    ("faults: state store (disk full, read-only, corrupt, locked)",
     "tests/unit/test_state_store.py::test_read_only_state_folder", True),
    ("fuzzing: agent HTTP", "tests/reliability/test_fuzz_agent.py", False),
]
_HYPOTHESIS_CASES = re.compile(r"(\d+) passing, (\d+) failing, and (\d+) invalid")


def group_of(nodeid: str) -> tuple[str, bool] | None:
    for name, prefix, fault_each in GROUPS:
        if nodeid.startswith(prefix):
            return name, fault_each
    return None


class ReliabilityReport:
    """Collects each test's outcome and tally; writes the report at the end of the session."""

    def __init__(self, config):
        self.config = config
        self.outcomes: dict[str, str] = {}
        self.examples: dict[str, int] = {}
        self.xfails: dict[str, str] = {}

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, config, items):
        if FULL:
            return
        skip = pytest.mark.skip(reason="long reliability case: run with PRTG_AI_RELIABILITY=full (make reliability)")
        for item in items:
            if item.get_closest_marker("reliability_slow"):
                item.add_marker(skip)

    def pytest_runtest_logreport(self, report):
        if group_of(report.nodeid) is None:
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
            name, fault_each = group_of(nodeid)
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
        order = list(dict.fromkeys(name for name, _, _ in GROUPS))
        groups = {name: groups[name] for name in order if name in groups}
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
