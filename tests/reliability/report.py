"""Run the reliability suite and write its counts into the README's "Reliability" block.

Usage (from the repository root; ``make reliability`` / ``make reliability-quick``)::

    python tests/reliability/report.py [--quick] [--no-readme] [-- PYTEST_ARGS...]

Runs pytest over ``tests/reliability`` plus the state-store fault tests
(``tests/unit/test_state_store.py``: disk full on a small tmpfs, read-only folder,
corrupt files, a held lock), the state concurrency test
(``tests/e2e/test_state_concurrency.py``) and the single-call rate/trend properties
(``tests/unit/test_trend_and_counters.py``). The full run sets
``PRTG_AI_RELIABILITY=full``; the conftest plugin writes
``benchmarks/results/reliability-<stamp>.json`` (cases tried, faults injected,
failures, per group), and the full run (not ``--quick``) writes the README block from it.
Exits with pytest's status.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BEGIN = "<!-- BEGIN GENERATED: reliability -->"
END = "<!-- END GENERATED: reliability -->"
TARGETS = ["tests/reliability", "tests/unit/test_state_store.py", "tests/e2e/test_state_concurrency.py",
           "tests/unit/test_trend_and_counters.py"]


def block(doc: dict) -> str:
    t = doc["totals"]
    lines = [
        BEGIN,
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
                  "or unreadable counters, clock steps and resets, full / read-only / corrupt / locked state.", END]
    return "\n".join(lines)


def write_readme(doc: dict, readme: Path = REPO / "README.md") -> bool:
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < 0:
        print(f"README.md has no {BEGIN} ... {END} block; not written", file=sys.stderr)
        return False
    readme.write_text(text[:start] + block(doc) + text[end + len(END):], encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick part only (what CI runs)")
    parser.add_argument("--no-readme", action="store_true", help="do not write the README block")
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args(argv)
    import datetime as dt

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = REPO / "benchmarks" / "results" / f"reliability-{stamp}{'-quick' if args.quick else ''}.json"
    env = dict(os.environ, PRTG_AI_RELIABILITY_REPORT=str(out))
    env["PRTG_AI_RELIABILITY"] = "quick" if args.quick else "full"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TARGETS, *args.pytest_args]
    print("$ " + " ".join(cmd), flush=True)
    status = subprocess.call(cmd, cwd=REPO, env=env)
    if not out.is_file():
        print(f"no report at {out}", file=sys.stderr)
        return status or 1
    doc = json.loads(out.read_text(encoding="utf-8"))
    print("\n" + block(doc))
    if not args.quick and not args.no_readme:
        write_readme(doc)
        print("README.md Reliability block written")
    return status


if __name__ == "__main__":
    sys.exit(main())
