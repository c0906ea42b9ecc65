"""click commands behind ``prtg-ai`` (everything except the fast ``run`` path)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from prtg_ai import __version__
from prtg_ai.run_cli import RUN_USAGE, run_command
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
    from prtg_ai.core.runtime import BASELINE

    from prtg_ai.core import deadline

    every = [{"option": BASELINE.option, "kind": BASELINE.kind, "required": False, "help": BASELINE.help,
              "multiple": True},
             {"option": deadline.OPTION, "kind": "duration", "required": False, "multiple": False,
              "help": f"per-scan deadline (default {deadline.DEFAULT_S:g}s, or {deadline.ENV}): past it the "
                      "scan answers a PRTG error naming what hung"}]
    if as_json:
        click.echo(json.dumps({"sensors": rows, "every_sensor": every}, indent=2))
        return
    for row in rows + [{"id": "every sensor", "summary": "runtime options", "params": every}]:
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
    notes: list[str] = []
    problems = validate(text, notes)
    for note in notes:
        click.echo(f"note: {note}", err=True)
    if problems:
        for p in problems:
            click.echo(f"invalid: {p}", err=True)
        sys.exit(1)
    click.echo("valid")


@cli.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--check-cost-explorer", is_flag=True,
              help="Also call Cost Explorer once to check gpu_spend's permission (AWS bills USD 0.01 per call).")
def doctor(as_json: bool, check_cost_explorer: bool) -> None:
    """Report what this host can monitor, and why not.

    Honours PRTG_AI_SYS_ROOT / PRTG_AI_PROC_ROOT (a container that mounts the host's
    sysfs elsewhere) exactly as the sensors do.
    """
    from prtg_ai.doctor import run_checks

    checks = run_checks(check_cost_explorer)
    if as_json:
        click.echo(json.dumps([{"check": c, "ok": ok, "detail": d} for c, ok, d in checks], indent=2))
        return
    for check, ok, detail in checks:
        click.echo(f"[{'ok' if ok else '--'}] {check}: {detail}")


@cli.command("accept-gpu-count")
@click.option("--state-dir", "state_dirs", multiple=True, type=click.Path(file_okay=False), metavar="DIR",
              help="State folder to update (repeatable). Default: this user's state folder and its 'agent' "
                   "subfolder (where prtg-ai serve keeps its state).")
def accept_gpu_count_cmd(state_dirs: tuple[str, ...]) -> None:
    """Accept this host's present GPU count as normal (after a GPU was removed on purpose).

    gpu_host keeps the most GPUs the host has ever shown and reports the difference
    as Missing GPUs (an error) on every scan until the GPU is back. Run this on the
    node when the change is permanent; the next scan of every gpu_host sensor then
    takes the count it sees as the new normal. (With --expected-gpus, change that
    parameter instead.)
    """
    from prtg_ai.core.paths import default_state_dir
    from prtg_ai.gpu.gpu_host import accept_gpu_count

    folders = [Path(d) for d in state_dirs] or [default_state_dir(), default_state_dir() / "agent"]
    total = 0
    for folder in folders:
        marked = accept_gpu_count(folder)
        total += marked
        click.echo(f"{folder}: {marked} gpu_host sensor(s) will accept their present GPU count on the next scan")
    if not total:
        raise click.ClickException("no gpu_host state found: nothing to accept (is --state-dir the sensor's folder?)")


@cli.command("render")
@click.option("--check", is_flag=True, help="Exit 1 if a generated file is stale; write nothing.")
def render_cmd(check: bool) -> None:
    """Regenerate lookups, device templates and the generated blocks of README.md and docs/ (in a checkout)."""
    from prtg_ai.build.artifacts import stale_files, write_files
    from prtg_ai.data import repo_root

    root = repo_root()
    if root is None:
        raise click.ClickException("render works in a source checkout of prtg-ai")
    try:
        if check:
            stale = stale_files(root)
            for p in stale:
                click.echo(f"stale: {p.relative_to(root)}", err=True)
            sys.exit(1 if stale else 0)
        for p in write_files(root):
            click.echo(f"wrote {p.relative_to(root)}")
    except ValueError as exc:  # a broken or unknown generated-block marker: say where
        raise click.ClickException(str(exc)) from None


def _read_lines(path: str | None, option: str) -> list[str]:
    """Non-empty, non-comment lines of a secrets file (a Kubernetes Secret or systemd credential)."""
    if not path:
        return []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{option} {path}: cannot read it ({type(exc).__name__})") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _agent_logging(state_dir: Path, scrubber) -> None:
    """Log to stderr at INFO by default (journald / kubectl logs), secrets scrubbed."""
    import logging

    from prtg_ai.core.logsetup import configure

    env = dict(os.environ)
    env.setdefault("PRTG_AI_LOG", "stderr")
    env.setdefault("PRTG_AI_LOG_LEVEL", "INFO")
    configure(state_dir, env, scrubber)
    ours = logging.getLogger("prtg_ai")
    theirs = logging.getLogger("waitress")  # waitress' own warnings get the same scrubbing handler
    theirs.handlers = list(ours.handlers)
    theirs.setLevel(logging.WARNING)
    theirs.propagate = False


@cli.command("serve")
@click.option("--listen", default="127.0.0.1:9705", show_default=True, envvar="PRTG_AI_LISTEN",
              help="HOST:PORT to listen on (0.0.0.0:PORT for every interface; needs authentication).")
@click.option("--token", "tokens", multiple=True, envvar="PRTG_AI_TOKEN", metavar="TOKEN",
              help="Accept this token (Bearer header or token= in the URL); repeatable. Env: PRTG_AI_TOKEN.")
@click.option("--token-file", type=click.Path(dir_okay=False), metavar="FILE",
              help="File with one accepted token per line (keeps tokens out of the process list).")
@click.option("--basic-auth", "basic", multiple=True, envvar="PRTG_AI_BASIC_AUTH", metavar="USER:PASSWORD",
              help="Accept HTTP basic authentication with these credentials; repeatable.")
@click.option("--allow", "allow", multiple=True, metavar="CIDR",
              help="Only answer clients in this network (e.g. the PRTG probe's address); repeatable.")
@click.option("--allow-path", "allow_paths", multiple=True, type=click.Path(exists=True, file_okay=False),
              metavar="DIR", help="Only serve path parameters (checkpoint_volume's path, xid_log) under this "
                                  "folder; repeatable. Default: none on a network listener, any on 127.0.0.1.")
@click.option("--sensors", "sensors", multiple=True, envvar="PRTG_AI_SENSORS", metavar="LIST",
              help="Sensors this agent serves (comma-separated or repeated). Default: the node-local ones "
                   "(gpu, gpu_host, east_west, checkpoint_volume); inference and gpu_spend are opt-in.")
@click.option("--allow-url", "allow_urls", multiple=True, metavar="CIDR|ORIGIN",
              help="Where client-chosen URLs (inference's url, metrics_url) may point: a CIDR network or "
                   "http(s)://host:port; repeatable. Default: loopback only. Link-local and cloud-metadata "
                   "addresses are always refused.")
@click.option("--api-key-file", "api_key_files", multiple=True, metavar="ORIGIN=FILE",
              help="Send the key in FILE to the model server at ORIGIN (http(s)://host:port) only; repeatable. "
                   "Keys in the agent's environment are never sent to a client-chosen URL.")
@click.option("--insecure", is_flag=True, help="Allow a non-loopback listener without authentication.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), metavar="FILE",
              help="Serve HTTPS with this PEM certificate (chain); needs --tls-key.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), metavar="FILE",
              help="The PEM private key of --tls-cert.")
@click.option("--state-dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Where rate/trend samples are kept (default: the state folder's 'agent' subfolder).")
@click.option("--cache-ttl", type=click.FloatRange(0, 300), default=5.0, show_default=True,
              help="Seconds one sensor result is shared by identical requests.")
@click.option("--threads", type=click.IntRange(1, 256), default=8, show_default=True, help="Worker threads.")
@click.option("--connection-limit", type=click.IntRange(8, 100_000), default=1000, show_default=True,
              help="Open connections at most (idle and slow ones included).")
@click.option("--channel-timeout", type=click.IntRange(1, 3600), default=30, show_default=True,
              help="Seconds before an idle or stalled connection is closed.")
@click.option("--sensor-defaults", "sensor_defaults", multiple=True, metavar='SENSOR="--PARAM VALUE ..."',
              help="Node settings added to every request for SENSOR (a request's own parameters win); "
                   "repeatable. Also from PRTG_AI_SENSOR_DEFAULTS (entries separated by ';' or newlines).")
@click.option("--deadline", "deadline_text", envvar="PRTG_AI_DEADLINE", metavar="DURATION",
              help="Per-scan deadline (default 45s, below PRTG's 60 s): a scan past it answers a PRTG error "
                   "naming what hung, and never holds a worker longer.")
def serve_cmd(listen: str, tokens: tuple[str, ...], token_file: str | None, basic: tuple[str, ...],
              allow: tuple[str, ...], allow_paths: tuple[str, ...], sensors: tuple[str, ...],
              allow_urls: tuple[str, ...], api_key_files: tuple[str, ...], insecure: bool, tls_cert: str | None,
              tls_key: str | None,
              state_dir: str | None, cache_ttl: float, threads: int, connection_limit: int,
              channel_timeout: int, sensor_defaults: tuple[str, ...] = (), deadline_text: str | None = None) -> None:
    """Serve every sensor over HTTP for PRTG's HTTP Data Advanced sensor.

    PRTG polls GET /sensors/SENSOR?PARAM=VALUE (the page at / lists the URLs);
    GET /health answers liveness probes ("ok", or "degraded" while a scan is stuck).
    Stops gracefully on SIGTERM.
    Authenticate with --token / --basic-auth, restrict clients with --allow,
    and add --tls-cert/--tls-key for HTTPS.
    """
    from prtg_ai.agent.auth import AuthConfigError, Authenticator, check_listen_policy, parse_basic, parse_networks
    from prtg_ai.agent.server import AgentServer, parse_listen, serve, tls_context
    from prtg_ai.core.paths import default_state_dir
    from prtg_ai.core.secrets import Scrubber

    scrubber = Scrubber()
    all_tokens = [t for t in tokens if t.strip()] + _read_lines(token_file, "--token-file")
    for secret in all_tokens + [b.partition(":")[2] for b in basic]:
        scrubber.register(secret)
    try:
        host, port = parse_listen(listen)
        auth = Authenticator(tokens=all_tokens, basic=[parse_basic(b) for b in basic],
                             allow=parse_networks(allow), scrubber=scrubber)
        warning = check_listen_policy(host, auth, insecure)
    except (AuthConfigError, ValueError) as exc:
        raise click.ClickException(scrubber.scrub(str(exc))) from None
    if bool(tls_cert) != bool(tls_key):
        raise click.ClickException("--tls-cert and --tls-key go together")
    context = None
    if tls_cert:
        import ssl

        try:
            context = tls_context(tls_cert, tls_key)
        except (ssl.SSLError, OSError) as exc:
            raise click.ClickException(f"cannot load --tls-cert/--tls-key: {exc}") from None
    node_defaults, deadline_s = _serve_settings(sensor_defaults, deadline_text)
    folder = Path(state_dir) if state_dir else default_state_dir() / "agent"
    _agent_logging(folder, scrubber)
    if warning:
        click.echo(f"warning: {warning}", err=True)
    app = _agent_app(auth, folder, host, cache_ttl, allow_paths, sensors, allow_urls, api_key_files,
                     deadline_s, node_defaults)
    try:
        server = AgentServer(app, host, port, ssl_context=context, threads=threads,
                             connection_limit=connection_limit, channel_timeout=channel_timeout,
                             admit=lambda client: auth.check_address(client).allowed)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {listen}: {exc.strerror or exc}") from None
    methods = ", ".join(auth.methods) or "none"
    sys.exit(serve(server, announce=lambda m: click.echo(
        f"{m} (auth: {methods})" if "listening" in m else m), sensor_ids=app.served))


def _agent_app(auth, folder: Path, host: str, cache_ttl: float, allow_paths: tuple[str, ...],
               sensors: tuple[str, ...], allow_urls: tuple[str, ...], api_key_files: tuple[str, ...],
               deadline_s: float, node_defaults: dict[str, list[str]]):
    """Build the agent's app with its client policy (what a token holder's parameters may reach)."""
    from prtg_ai.agent.app import AgentApp
    from prtg_ai.agent.auth import is_loopback_host
    from prtg_ai.core.policy import PolicyError

    keys = {}
    for spec in api_key_files:
        origin, sep, file = spec.rpartition("=")
        if not sep or not origin:
            raise click.ClickException("--api-key-file takes ORIGIN=FILE, "
                                       "e.g. http://127.0.0.1:8000=/etc/prtg-ai/vllm.key")
        lines = _read_lines(file, "--api-key-file")
        if not lines:
            raise click.ClickException(f"--api-key-file {file}: the file holds no key")
        keys[origin] = lines[0]
        auth.scrubber.register(lines[0])
    # Path parameters: nothing on a network listener unless --allow-path names folders.
    paths = allow_paths if allow_paths or not is_loopback_host(host) else None
    try:
        return AgentApp(auth, folder, cache_ttl=cache_ttl, allowed_paths=paths,
                        sensors=sensors or None, allow_urls=allow_urls, api_keys=keys,
                        deadline_s=deadline_s, sensor_defaults=node_defaults)
    except (PolicyError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


def _serve_settings(entries: tuple[str, ...], deadline_text: str | None) -> tuple[dict[str, list[str]], float]:
    """``--sensor-defaults`` (and PRTG_AI_SENSOR_DEFAULTS) and ``--deadline``, checked before listening."""
    from prtg_ai.agent import defaults
    from prtg_ai.core import deadline

    try:
        parsed = defaults.parse([*defaults.env_entries(os.environ.get(defaults.ENV)), *entries])
        return parsed, deadline.parse(deadline_text)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@cli.command("push")
@click.option("--probe", required=True, envvar="PRTG_AI_PROBE", metavar="URL",
              help="The probe's push URL base, e.g. https://probe.example:5051 (HTTP Push Data Advanced).")
@click.option("--token", "tokens", multiple=True, envvar="PRTG_AI_PUSH_TOKENS", metavar="SENSOR[:LABEL]=TOKEN",
              help="Push SENSOR's result to the push sensor with this Identification Token; repeatable.")
@click.option("--token-file", type=click.Path(dir_okay=False), metavar="FILE",
              help="File with one SENSOR[:LABEL]=TOKEN per line (keeps tokens out of the process list).")
@click.option("--sensor-args", "sensor_args", multiple=True, metavar='SENSOR[:LABEL]="--PARAM VALUE ..."',
              help="Parameters of a pushed sensor, as prtg-ai run takes them; repeatable.")
@click.option("--interval", type=click.FloatRange(1, 86400), default=60.0, show_default=True,
              help="Seconds between pushes (match the push sensor's scanning interval).")
@click.option("--timeout", type=click.FloatRange(0.5, 300), default=15.0, show_default=True,
              help="Seconds one POST may take.")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False), metavar="FILE",
              help="CA bundle that signed the probe's certificate.")
@click.option("--insecure-skip-verify", is_flag=True, help="Do not verify the probe's TLS certificate.")
@click.option("--once", is_flag=True, help="Push each sensor once (with retries) and exit; 1 if one failed.")
def push_cmd(probe: str, tokens: tuple[str, ...], token_file: str | None, sensor_args: tuple[str, ...],
             interval: float, timeout: float, ca_file: str | None, insecure_skip_verify: bool, once: bool) -> None:
    """Run sensors on a schedule and POST each result to PRTG's HTTP Push Data Advanced sensor.

    For nodes PRTG cannot reach. Example:

        prtg-ai push --probe https://probe:5051 --token checkpoint_volume=TOKEN
        --sensor-args checkpoint_volume="--path /data/ckpt"

    Failed pushes are retried with exponential backoff and jitter; SIGTERM stops it cleanly.
    """
    from prtg_ai.agent.push import PushConfigError, Pusher, install_signal_handlers, parse_targets
    from prtg_ai.core.context import Context

    ctx = Context()
    specs = [t for t in tokens if t.strip()] + _read_lines(token_file, "--token-file")
    for spec in specs:
        ctx.secrets.register(spec.partition("=")[2].strip())
    if ca_file and insecure_skip_verify:
        raise click.ClickException("--ca-file and --insecure-skip-verify contradict each other; give one")
    try:
        targets = parse_targets(specs, sensor_args)
        pusher = Pusher(probe, targets, interval, verify=False if insecure_skip_verify else (ca_file or True),
                        timeout=timeout, ctx=ctx)
    except PushConfigError as exc:
        raise click.ClickException(ctx.secrets.scrub(str(exc))) from None
    _agent_logging(ctx.state_dir, ctx.secrets)
    if insecure_skip_verify:
        import warnings

        warnings.filterwarnings("ignore", message="Unverified HTTPS request")  # said once below instead
        click.echo("warning: TLS certificate verification is OFF (--insecure-skip-verify)", err=True)
    install_signal_handlers(pusher)
    sys.exit(pusher.run(once=once))


def _add_installer_commands() -> None:
    # The installer is its own package in the same distribution; its commands join
    # `prtg-ai` here so a PRTG administrator has one tool to learn.
    from prtg_ai_installer.cli import install, uninstall

    cli.add_command(install)
    cli.add_command(uninstall)


_add_installer_commands()


def _add_action_commands() -> None:
    # `prtg-ai act <action>`: actions are commands, never sensors (design.md).
    from prtg_ai.actions.cli import act

    cli.add_command(act)


_add_action_commands()

__all__ = ["cli", "RUN_USAGE"]
