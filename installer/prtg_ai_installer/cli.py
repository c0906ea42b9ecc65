"""``install`` and ``uninstall`` click commands (wired into ``prtg-ai`` by ``cli.add_command``).

Also runnable on their own: ``python -m prtg_ai_installer install --prtg-dir DIR --role core``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path, PureWindowsPath

import click

from prtg_ai_installer import apply, layout
from prtg_ai_installer.manifest import ManifestError

_ROLE_HELP = "core (lookups, device templates), probe (script wrappers), ssh-target (.sh wrappers); repeat or comma-separate"
_LABELS = {
    "mkdir": "create folder", "create": "write", "update": "update", "backup": "back up, then write",
    "unchanged": "unchanged", "keep": "keep", "remove": "remove", "restore": "restore",
    "rmdir": "remove folder", "manifest": "update manifest",
}


@click.command("install")
@click.option("--prtg-dir", "prtg_dir", type=click.Path(file_okay=False),
              help="PRTG program folder (core/probe; default: from the Windows registry, else the standard "
                   "folder) or the SSH target's /var/prtg.")
@click.option("--role", "roles", multiple=True, required=True, metavar="ROLE", help=_ROLE_HELP)
@click.option("--dry-run", is_flag=True, help="Print what would change; write nothing.")
@click.option("--python", "python", metavar="PATH",
              help="Interpreter the wrappers run (default: this one). Give the target's path when installing "
                   "for another machine.")
@click.option("--reload-lookups", "reload_url", metavar="URL",
              help="After installing, ask the PRTG core at URL to reload lookups (/api/loadlookups.htm).")
@click.option("--api-token", envvar="PRTG_API_TOKEN", metavar="TOKEN",
              help="PRTG API key for --reload-lookups (or the PRTG_API_TOKEN environment variable).")
@click.option("--ca-bundle", type=click.Path(dir_okay=False, exists=True), help="CA bundle for the core's TLS certificate.")
@click.option("--insecure", is_flag=True, help="Do not verify the core's TLS certificate (not recommended).")
@click.option("--force", is_flag=True, help="Install into --prtg-dir even if it does not look like a PRTG folder.")
@click.option("--agent-token-file", "agent_token_file", type=click.Path(dir_okay=False, exists=True),
              metavar="FILE", help="The token file the GPU nodes' agents use (prtg-ai serve --token-file FILE): "
                                   "the HTTP device templates' URLs then authenticate (those files are written "
                                   "owner-only). The token is never printed.")
def install(prtg_dir, roles, dry_run, python, reload_url, api_token, ca_bundle, insecure, force,
            agent_token_file=None) -> None:
    """Place lookups, device templates and script wrappers into PRTG's folders.

    Re-running is safe: unchanged files stay untouched, and a file that someone else
    wrote or changed is kept as NAME.prtgai-backup-<time> before it is replaced.
    """
    from prtg_ai import __version__
    from prtg_ai.core.registry import sensor_ids
    from prtg_ai_installer import plan as plan_mod

    role_list = _roles(roles)
    root = _root(prtg_dir, role_list)
    python = python or plan_mod.default_python()
    if not (os.path.isabs(python) or PureWindowsPath(python).is_absolute()):
        raise click.BadParameter(f"{python!r} is not an absolute path", param_hint="--python")
    if reload_url and not api_token:
        raise click.BadParameter("--reload-lookups needs --api-token (or PRTG_API_TOKEN)", param_hint="--api-token")
    token = _agent_token(agent_token_file)
    try:
        the_plan = plan_mod.build_plan(role_list, sensor_ids(), python, __version__, plan_mod.load_shipped(),
                                       agent_token=token)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if "core" in role_list and token is None:
        click.echo("warning: the HTTP device templates (prtgai_gpu_node_http_*, prtgai_inference_server) carry no "
                   "token, so their sensors will answer 401 from an agent that requires one. Run install again with "
                   "--agent-token-file FILE, the file the agents use (prtg-ai serve --token-file FILE).", err=True)
    if "probe" in role_list and sys.platform != "win32" and not PureWindowsPath(python).drive:
        click.echo(f"note: the probe's .cmd wrappers will run {python}; on a Windows probe pass --python "
                   "with the probe's interpreter path.", err=True)
    _ensure_root(root, role_list, dry_run)
    if prtg_dir is not None and not force:
        _looks_like_prtg(root, role_list)
    click.echo(f"prtg-ai install ({', '.join(role_list)}) into {root}")
    click.echo(f"wrappers run: {python}")
    try:
        steps = apply.preview_install(the_plan, root) if dry_run else apply.install(the_plan, root)
    except (apply.InstallError, ManifestError) as exc:
        raise click.ClickException(str(exc)) from None
    _report(root, steps, dry_run)
    if reload_url:
        _reload(reload_url, api_token, ca_bundle, insecure, dry_run, role_list)


@click.command("uninstall")
@click.option("--prtg-dir", "prtg_dir", type=click.Path(file_okay=False),
              help="The folder given to install (default as for install).")
@click.option("--role", "roles", multiple=True, metavar="ROLE", help="Only these roles (default: everything installed).")
@click.option("--dry-run", is_flag=True, help="Print what would change; write nothing.")
def uninstall(prtg_dir, roles, dry_run) -> None:
    """Remove exactly what install wrote (per its manifest) and restore what it moved aside."""
    role_list = _roles(roles) if roles else None
    root = _root(prtg_dir, role_list or ("core",))
    if not (root / apply.MANIFEST_NAME).is_file():
        click.echo(f"nothing to uninstall: no {apply.MANIFEST_NAME} in {root}")
        return
    click.echo(f"prtg-ai uninstall ({', '.join(role_list) if role_list else 'all roles'}) from {root}")
    try:
        steps = apply.preview_uninstall(root, role_list) if dry_run else apply.uninstall(root, role_list)
    except (apply.InstallError, ManifestError) as exc:
        raise click.ClickException(str(exc)) from None
    _report(root, steps, dry_run)


def _agent_token(path: str | None) -> str | None:
    """The first token of the agents' token file (the format ``serve --token-file`` reads)."""
    if not path:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"--agent-token-file {path}: cannot read it ({type(exc).__name__})") from None
    tokens = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not tokens:
        raise click.ClickException(f"--agent-token-file {path}: no token in it (one token per line)")
    return tokens[0]


def _roles(values) -> tuple[str, ...]:
    try:
        return layout.parse_roles(values)
    except layout.LayoutError as exc:
        raise click.BadParameter(str(exc), param_hint="--role") from None


def _root(prtg_dir: str | None, roles) -> Path:
    if prtg_dir is not None:
        if not prtg_dir.strip():
            # Path("") is ".": an empty value would install into whatever folder the shell is in.
            raise click.BadParameter("is empty; give PRTG's program folder (or /var/prtg on an SSH target)",
                                     param_hint="--prtg-dir")
        return Path(os.path.abspath(prtg_dir))
    found = layout.default_root(roles)
    if found is None:
        raise click.UsageError("no PRTG folder detected on this system: pass --prtg-dir")
    return Path(found)


def _ensure_root(root: Path, roles, dry_run: bool) -> None:
    if root.is_dir():
        return
    if "ssh-target" in roles and not root.exists():
        # A fresh GPU node has no /var/prtg yet; PRTG's SSH sensors need it to exist.
        if not dry_run:
            root.mkdir(parents=True)
            click.echo(f"created {root} (left in place by uninstall)")
        return
    raise click.ClickException(f"{root} is not a folder: is PRTG installed there? Pass --prtg-dir")


# What a PRTG tree has (any one is enough): the core's and probe's program folders carry
# "Custom Sensors", "lookups" or "devicetemplates" and their executables; an SSH target's
# /var/prtg carries scripts or scriptsxml (and is named prtg). An empty folder (a fresh node) and a folder with our
# manifest (a re-install) are fine too.
PRTG_MARKERS = ("Custom Sensors", "lookups", "devicetemplates", "PRTG Probe.exe", "PRTG Server.exe", "scriptsxml",
                "scripts")


def _looks_like_prtg(root: Path, roles) -> None:
    """Refuse a --prtg-dir that is not a PRTG tree (``/``, a home folder, a typo); --force overrides."""
    if not root.is_dir():
        return  # a dry run of a fresh SSH target: nothing there to harm
    if (root / apply.MANIFEST_NAME).is_file() or any((root / m).exists() for m in PRTG_MARKERS):
        return
    if "ssh-target" in roles and root.name.lower() == "prtg":
        return  # /var/prtg on a node PRTG has not used yet
    try:
        empty = not any(root.iterdir())
    except OSError:
        empty = False
    if empty:
        return
    raise click.ClickException(
        f"{root} does not look like a PRTG folder (none of {', '.join(PRTG_MARKERS)} is in it). "
        f"Check --prtg-dir, or pass --force to install there anyway.")


def _report(root: Path, steps, dry_run: bool) -> None:
    for step in steps:
        if step.action == "unchanged":
            continue  # counted in the summary; listing them hides what changed
        label = _LABELS.get(step.action, step.action)
        shown = Path(root, *step.path.split("/"))
        extra = f"  ({step.detail})" if step.detail else ""
        if step.action == "restore":
            extra = f"  -> {Path(root, *step.detail.split('/'))}"
        click.echo(f"  {label:<20} {shown}{extra}")
    changes = sum(1 for s in steps if s.action in apply.CHANGES)
    backups = sum(1 for s in steps if s.action == "backup")
    unchanged = sum(1 for s in steps if s.action == "unchanged")
    tail = "dry run: nothing was written" if dry_run else "done"
    click.echo(f"{changes} change(s), {backups} backup(s), {unchanged} unchanged; {tail}.")


def _reload(url, token, ca_bundle, insecure, dry_run, roles) -> None:
    from prtg_ai_installer.reload import ReloadError, reload_lookups

    if dry_run:
        click.echo(f"would ask {url.rstrip('/')}/api/loadlookups.htm to reload lookups")
        return
    if "core" not in roles:
        click.echo("note: lookups live on the core; reloading anyway", err=True)
    try:
        result = reload_lookups(url, token, verify=False if insecure else (ca_bundle or True))
    except ReloadError as exc:
        raise click.ClickException(f"files are installed, but the lookup reload failed: {exc}") from None
    click.echo(f"PRTG reloaded lookups ({result.url}: HTTP {result.status})")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """prtg-ai installer: install / uninstall the pack's files in PRTG's folders."""


main.add_command(install)
main.add_command(uninstall)

if __name__ == "__main__":  # pragma: no cover
    main()
