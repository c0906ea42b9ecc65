"""click commands behind ``prtg-ai`` (everything except the fast ``run`` path)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import click

from prtg_ai import __version__
from prtg_ai.cli import RUN_USAGE, run_command
from prtg_ai.core import registry


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="prtg-ai")
def cli() -> None:
    """PRTG custom sensors for AI infrastructure: GPUs, checkpoint volumes, fabric, cloud spend.

    Test any sensor here exactly as PRTG will run it:

        prtg-ai run checkpoint_volume --path /data/checkpoints --format table
    """


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_sensors(as_json: bool) -> None:
    """List the sensors and their parameters."""
    rows = []
    for sid in registry.sensor_ids():
        cls = registry.get(sid)
        rows.append({
            "id": sid,
            "title": cls.title,
            "summary": cls.summary,
            "interval": cls.interval,
            "params": [{"option": p.option, "kind": p.kind, "required": p.required, "help": p.help,
                        "multiple": p.multiple} for p in cls.params],
        })
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['id']}  -  {row['summary']}")
        for p in row["params"]:
            need = "required" if p["required"] else "optional"
            many = ", repeatable" if p["multiple"] else ""
            click.echo(f"    {p['option']:<16} {p['kind']:<9} {need}{many}: {p['help']}")
        click.echo("")


@cli.command("run", context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                      "help_option_names": ["-h", "--help"]})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run(args: tuple[str, ...]) -> None:
    """Run one sensor and print its PRTG result; always exits 0.

    Usage: prtg-ai run SENSOR [--format prtg|v2|table] [--PARAM VALUE ...]

    --format prtg (default) prints the EXE/Script Advanced JSON, v2 the Script v2
    JSON, table a table with each channel's limit state. `prtg-ai list` shows each
    sensor's parameters.
    """
    run_command(list(args))


@cli.command("validate")
@click.argument("source", default="-", metavar="[FILE|-]")
def validate_cmd(source: str) -> None:
    """Check a PRTG result (legacy or Script v2 JSON) against PRTG's rules."""
    from prtg_ai.prtg.validate import validate

    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {source}: {exc}") from None
    problems = validate(text)
    if problems:
        for p in problems:
            click.echo(f"invalid: {p}", err=True)
        sys.exit(1)
    click.echo("valid")


def _writable(folder: Path) -> tuple[bool, str]:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-", delete=True):
            pass
        return True, str(folder)
    except OSError as exc:
        return False, f"{folder}: {exc.strerror or exc}"


@cli.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def doctor(as_json: bool) -> None:
    """Report what this host can monitor, and why not."""
    from prtg_ai.backends import aws, nvml
    from prtg_ai.core.paths import default_state_dir

    checks = []
    state_ok, state_detail = _writable(default_state_dir())
    checks.append(("State folder writable", state_ok, state_detail +
                   ("" if state_ok else " (set PRTG_AI_STATE_DIR to a writable folder)")))
    nvml_ok, nvml_detail = nvml.probe()
    checks.append(("NVML (gpu, gpu_host)", nvml_ok, nvml_detail))
    ib = Path("/sys/class/infiniband")
    ib_ok = ib.is_dir() and any(ib.iterdir())
    checks.append(("InfiniBand / RoCE HCAs (east_west)", ib_ok,
                   ", ".join(sorted(p.name for p in ib.iterdir())) if ib_ok else "none found under /sys/class/infiniband"))
    aws_ok, aws_detail = aws.credentials_status()
    checks.append(("AWS credentials (gpu_spend)", aws_ok, aws_detail))
    checks.append(("Filesystem access (checkpoint_volume)", True, "always available"))
    checks.append(("Python", True, f"{sys.version.split()[0]} at {sys.executable}"))
    checks.append(("prtg-ai", True, f"{__version__} ({os.path.dirname(os.path.abspath(__file__))})"))
    if as_json:
        click.echo(json.dumps([{"check": c, "ok": ok, "detail": d} for c, ok, d in checks], indent=2))
        return
    for check, ok, detail in checks:
        click.echo(f"[{'ok' if ok else '--'}] {check}: {detail}")


@cli.command("render")
@click.option("--check", is_flag=True, help="Exit 1 if a generated file is stale; write nothing.")
def render_cmd(check: bool) -> None:
    """Regenerate lookups and README channel tables from the catalogue (in a checkout)."""
    from prtg_ai.artifacts import stale_files, write_files
    from prtg_ai.data import repo_root

    root = repo_root()
    if root is None:
        raise click.ClickException("render works in a source checkout of prtg-ai")
    if check:
        stale = stale_files(root)
        for p in stale:
            click.echo(f"stale: {p.relative_to(root)}", err=True)
        sys.exit(1 if stale else 0)
    for p in write_files(root):
        click.echo(f"wrote {p.relative_to(root)}")


__all__ = ["cli", "RUN_USAGE"]
