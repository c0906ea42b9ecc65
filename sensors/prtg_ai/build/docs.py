"""The generated blocks of README.md and docs/: what each block name renders, and the files it gives.

Block names (see ``splice.py`` for the markers):

* ``channels/<sensor>``: the sensor's channels from the catalogue (name, Script v2 id, unit,
  float, default limits, description);
* ``lookups/<sensor>``: every value lookup the sensor's channels use, each value with the text
  PRTG shows and the state it sets, for NOC staff;
* ``benchmarks`` and ``reliability``: the newest recorded runs in ``benchmarks/results/``
  (``reports.py``).

Every page is scanned: ``README.md`` and ``docs/**/*.md``. A block whose name no renderer
knows is an error, so nothing generated-looking escapes the check.
"""

from __future__ import annotations

from pathlib import Path

from prtg_ai.build import reports
from prtg_ai.build.splice import splice
from prtg_ai.catalog import load
from prtg_ai.catalog.lookups import load_lookups
from prtg_ai.core.registry import sensor_ids

# How a lookup state reads to someone watching PRTG ("None" sets no status).
_STATE_WORDS = {"Ok": "Ok", "Warning": "Warning", "Error": "Error", "None": "no status (None)"}


def pages(root: Path) -> list[Path]:
    """Every Markdown page that may hold generated blocks."""
    return [root / "README.md", *sorted((root / "docs").glob("**/*.md"))]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _unit(spec) -> str:
    if spec.lookup:
        return f"lookup `{spec.lookup}`"
    if spec.unit == "Custom":
        return spec.customunit or "Custom"
    return spec.unit


def _limits(spec) -> str:
    parts = []
    for label, key in (("max error", "limitmaxerror"), ("max warning", "limitmaxwarning"),
                       ("min warning", "limitminwarning"), ("min error", "limitminerror")):
        value = getattr(spec, key)
        if value is not None:
            parts.append(f"{label} {value:g}")
    if parts and not spec.limitmode:
        parts.append("(off by default)")
    return ", ".join(parts) or "—"


def channel_table(sensor: str) -> str:
    """Markdown table of ``sensor``'s channels, from the catalogue."""
    out = ["| Channel | v2 id | Unit | Float | Default limits | Description |", "|---|---|---|---|---|---|"]
    for spec in load(sensor):
        ids = str(spec.v2_id) if spec.v2_span == 1 else f"{spec.v2_id}–{spec.v2_id + spec.v2_span - 1}"
        out.append(f"| {spec.name} | {ids} | {_unit(spec)} | {'yes' if spec.float else 'no'} "
                   f"| {_limits(spec)} | {_cell(spec.description)} |")
    return "\n".join(out)


def lookup_values(sensor: str) -> str:
    """Each value lookup ``sensor``'s channels use: the channels, then value, text and state."""
    users: dict[str, list[str]] = {}
    for spec in load(sensor):
        if spec.lookup:
            users.setdefault(spec.lookup, []).append(spec.name)
    known = load_lookups()
    out: list[str] = []
    for lookup_id, channels in users.items():
        lk = known[lookup_id]
        out += [f"**{', '.join(channels)}** (`{lookup_id}`); any other value: "
                f"{_STATE_WORDS[lk.undefined]}.", "",
                "| Value | Shows | State |", "|---|---|---|"]
        out += [f"| {value} | {_cell(text)} | {_STATE_WORDS[state]} |"
                for value, (state, text) in sorted(lk.values.items())]
        out.append("")
    return "\n".join(out)


def block_renderer(root: Path):
    """name -> body for every block name; ValueError for a name no renderer knows."""
    sensors = set(sensor_ids())
    results = root / "benchmarks" / "results"

    def render(name: str) -> str:
        kind, _, sensor = name.partition("/")
        if kind == "channels" and sensor in sensors:
            return channel_table(sensor)
        if kind == "lookups" and sensor in sensors:
            return lookup_values(sensor)
        if name == "benchmarks":
            return reports.benchmark_block(reports.newest_benchmarks(results))
        if name == "reliability":
            return reports.reliability_block(reports.newest_reliability(results))
        raise ValueError(f"unknown generated block {name!r} (known: channels/<sensor>, lookups/<sensor>, "
                         "benchmarks, reliability)")

    return render


def expected_pages(root: Path) -> dict[Path, str]:
    """Every page under ``root`` that has generated blocks, and the text it must have."""
    render = block_renderer(root)
    expected = {}
    for page in pages(root):
        if not page.is_file():
            continue
        text = page.read_text(encoding="utf-8")
        try:
            expected[page] = splice(text, render)
        except ValueError as exc:
            raise ValueError(f"{page.relative_to(root)}: {exc}") from None
    return expected
