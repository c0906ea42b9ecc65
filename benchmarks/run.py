"""Run every benchmark in this folder and print one table; write JSON results and the README table.

Usage: python benchmarks/run.py [--quick] [--no-readme] [--only NAME ...]
Every figure is a ratio against a baseline measured in the same run (medians of repeated runs).
``--quick`` (a smoke run, under 2 minutes on 2 cores) never touches the README; the full
run (under 15 minutes) writes the table between the README's benchmark markers.
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

BENCHMARKS = ["bench_startup", "bench_spend_startup", "bench_k8s_startup", "bench_probe_cost", "bench_agent",
              "bench_ce_requests", "bench_checkpoint_scan", "bench_cloud_spend", "bench_cloud_spend_startup"]
BEGIN = "<!-- BEGIN GENERATED: benchmarks (make bench) -->"
END = "<!-- END GENERATED: benchmarks -->"


def table(rows: list[dict]) -> str:
    lines = ["| Benchmark | Baseline (same run) | Ratio | Target | Met | Detail |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['benchmark']} | {r['baseline']} | {r['ratio']} | {r['target']} | "
                     f"{'yes' if r['ok'] else 'NO'} | {r['detail']} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--no-readme", action="store_true", help="do not update README.md")
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
    print(table(rows))
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (results / f"{stamp}{'-quick' if args.quick else ''}.json").write_text(
        json.dumps({"when": when, "machine": where, "quick": args.quick, "rows": rows}, indent=1))
    readme = HERE.parent / "README.md"
    if not args.no_readme and not args.quick and not args.only and readme.is_file():
        text = readme.read_text(encoding="utf-8")
        start, end = text.find(BEGIN), text.find(END)
        if start >= 0 and end >= 0:
            block = f"{BEGIN}\nMeasured {when} on {where}.\n\n{table(rows)}\n{END}"
            readme.write_text(text[:start] + block + text[end + len(END):], encoding="utf-8")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
