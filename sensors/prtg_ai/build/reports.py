"""Benchmark and reliability tables for ``docs/benchmarks.md``, rendered from the committed results.

``benchmarks/run.py`` and ``tests/reliability/report.py`` write a JSON file per run into
``benchmarks/results/``; the docs show the newest complete benchmark run (``"complete": true``:
every module, not ``--quick``) and the newest full reliability run (``"mode": "full"``).
Both scripts and ``prtg-ai render`` go through these functions, so the check that a block is
current is the same comparison everywhere.
"""

from __future__ import annotations

import json
from pathlib import Path


def benchmark_table(rows: list[dict]) -> str:
    lines = ["| Benchmark | Baseline (same run) | Ratio | Target | Met | Detail |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['benchmark']} | {r['baseline']} | {r['ratio']} | {r['target']} | "
                     f"{'yes' if r['ok'] else 'NO'} | {r['detail']} |")
    return "\n".join(lines)


def benchmark_block(doc: dict | None) -> str:
    if doc is None:
        return "No complete benchmark run recorded yet: run `make bench`."
    return f"Measured {doc['when']} on {doc['machine']}.\n\n{benchmark_table(doc['rows'])}"


def reliability_block(doc: dict | None) -> str:
    if doc is None:
        return "No full reliability run recorded yet: run `make reliability`."
    t = doc["totals"]
    lines = [
        f"Run {doc['when']} ({doc['mode']}: `make reliability`) on {doc['machine']}: "
        f"**{t['cases']:,} cases tried, {t['faults']:,} faults injected, {t['failures']} failures**"
        + (f", {t['known_bugs']} known bugs recorded as strict xfail (see below)" if t.get("known_bugs") else "")
        + ".",
        "",
        "| Part | Tests | Cases tried | Faults injected | Failures | Known bugs (xfail) |",
        "|---|---|---|---|---|---|",
    ]
    for name, g in doc["groups"].items():
        lines.append(f"| {name} | {g['tests']:,} | {g['cases']:,} | {g['faults']:,} | {g['failures']} | "
                     f"{g.get('known_bugs', 0)} |")
    lines.append(f"| **total** | {t['tests']:,} | {t['cases']:,} | {t['faults']:,} | {t['failures']} | "
                 f"{t.get('known_bugs', 0)} |")
    if doc.get("known_bugs"):
        lines += ["", "Known bugs (each a strict xfail: the fix turns it into a failure until the mark is removed):", ""]
        lines += [f"- `{b['test']}`: {b['reason']}" for b in doc["known_bugs"]]
    lines += ["", "Cases: hypothesis examples, fuzzed requests, sensor runs and processes (one per test where a "
                  "test does not count its own). Faults: NVML errors raised mid-sweep, AWS requests killed, corrupt "
                  "or unreadable counters, clock steps and resets, full / read-only / corrupt / locked state."]
    return "\n".join(lines)


def newest_benchmarks(results: Path) -> dict | None:
    """The newest complete benchmark run in ``results`` (file names sort by time), or None."""
    return _newest(sorted(results.glob("2*.json")), lambda doc: doc.get("complete") is True)


def newest_reliability(results: Path) -> dict | None:
    """The newest full reliability run in ``results``, or None."""
    return _newest(sorted(results.glob("reliability-*.json")), lambda doc: doc.get("mode") == "full")


def _newest(paths: list[Path], wanted) -> dict | None:
    for path in reversed(paths):
        doc = json.loads(path.read_text(encoding="utf-8"))
        if wanted(doc):
            return doc
    return None
