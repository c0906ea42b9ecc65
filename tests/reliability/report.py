"""Run the reliability suite and write its counts into the "reliability" block of docs/benchmarks.md.

Usage (from the repository root; ``make reliability`` / ``make reliability-quick``)::

    python tests/reliability/report.py [--quick] [--no-readme] [-- PYTEST_ARGS...]

Runs every test marked ``reliability`` (``pytest -m reliability tests``): the suite in
``tests/reliability`` plus, wherever they live, the state-store fault tests (disk full
on a small tmpfs, read-only folder, corrupt files, a held lock), the state concurrency
test and the single-call rate/trend properties. The marker's argument names the
report group (``tests/reliability/conftest.py``). The full run sets
``PRTG_AI_RELIABILITY=full``; the conftest plugin writes
``benchmarks/results/reliability-<stamp>.json`` (cases tried, faults injected,
failures, per group), and the full run (not ``--quick``) writes the docs block from it, as
``prtg-ai render`` renders it from the newest full run's file.
Exits with pytest's status.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from prtg_ai.build.reports import reliability_block
from prtg_ai.build.splice import splice_file

REPO = Path(__file__).resolve().parents[2]
SELECT = ["-m", "reliability", "tests"]  # the tests are found by their marker


def write_docs(doc: dict, page: Path = REPO / "docs" / "benchmarks.md") -> bool:
    """Write the counts into the page's reliability block; True when the page changed."""
    return splice_file(page, "reliability", reliability_block(doc))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick part only (what CI runs)")
    parser.add_argument("--no-readme", action="store_true", help="do not write the docs block")
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args(argv)
    import datetime as dt

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = REPO / "benchmarks" / "results" / f"reliability-{stamp}{'-quick' if args.quick else ''}.json"
    env = dict(os.environ, PRTG_AI_RELIABILITY_REPORT=str(out))
    env["PRTG_AI_RELIABILITY"] = "quick" if args.quick else "full"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SELECT, *args.pytest_args]
    print("$ " + " ".join(cmd), flush=True)
    status = subprocess.call(cmd, cwd=REPO, env=env)
    if not out.is_file():
        print(f"no report at {out}", file=sys.stderr)
        return status or 1
    doc = json.loads(out.read_text(encoding="utf-8"))
    print("\n" + reliability_block(doc))
    if not args.quick and not args.no_readme:
        write_docs(doc)
        print("docs/benchmarks.md reliability block written")
    return status


if __name__ == "__main__":
    sys.exit(main())
