"""Run every benchmark in this folder and print one table; write JSON results and the docs table.

Usage: python benchmarks/run.py [--quick] [--no-readme] [--only NAME ...]
Every figure is a ratio against a baseline measured in the same run (medians of repeated runs).
``--quick`` (a smoke run, under 2 minutes on 2 cores) and ``--only`` never touch the docs; the
full run (under 15 minutes) marks its results file ``"complete": true`` and writes the table
into the ``benchmarks`` block of docs/benchmarks.md, as ``prtg-ai render`` renders it from
the newest complete results file (``--no-readme`` leaves that to ``prtg-ai render``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import machine  # noqa: E402

from prtg_ai.build.reports import benchmark_block, benchmark_table  # noqa: E402
from prtg_ai.build.splice import splice_file  # noqa: E402

BENCHMARKS = ["bench_startup", "bench_spend_startup", "bench_k8s_startup", "bench_probe_cost", "bench_agent",
              "bench_ce_requests", "bench_checkpoint_scan", "bench_cloud_spend", "bench_cloud_spend_startup"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--no-readme", action="store_true", help="do not write docs/benchmarks.md")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these benchmark modules")
    args = parser.parse_args()
    rows: list[dict] = []
    started = time.monotonic()
    for name in args.only or BENCHMARKS:
        module = importlib.import_module(name)
        kwargs = {"repeats": 3} if args.quick else {}
        t0 = time.monotonic()
        rows.extend(module.run(**kwargs))
        print(f"{name}: {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    where = machine()
    print(f"prtg-ai benchmarks{' (quick)' if args.quick else ''}, {when}, {where}, "
          f"{time.monotonic() - started:.0f} s\n")
    print(benchmark_table(rows))
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    complete = not args.quick and not args.only  # every module, full repeats: what the docs show
    doc = {"when": when, "machine": where, "quick": args.quick, "complete": complete, "rows": rows}
    (results / f"{stamp}{'-quick' if args.quick else ''}.json").write_text(json.dumps(doc, indent=1))
    page = HERE.parent / "docs" / "benchmarks.md"
    if complete and not args.no_readme and page.is_file():
        splice_file(page, "benchmarks", benchmark_block(doc))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
