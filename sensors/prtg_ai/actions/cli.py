"""``prtg-ai act <action>``: the click commands of the actions (joined to ``prtg-ai`` in ``commands.py``)."""

from __future__ import annotations

import sys

import click

from prtg_ai.actions import idle_policy as ip


def _duration(name: str, minimum: float, maximum: float):
    def convert(ctx, param, value):
        if value is None:
            return None
        from prtg_ai.core.errors import ConfigError
        from prtg_ai.core.params import parse_duration

        try:
            seconds = parse_duration(name, str(value).strip())
        except ConfigError as exc:
            raise click.BadParameter(exc.problem) from None
        if not minimum <= seconds <= maximum:
            raise click.BadParameter(f"must be between {minimum:g}s and {maximum:g}s")
        return seconds
    return convert


def _tag_key(ctx, param, value):
    value = (value or "").strip()
    # AWS tag keys: up to 128 characters of letters, digits, spaces and _ . : / = + - @
    if not value or len(value) > 128 or not all(c.isalnum() or c in " _.:/=+-@" for c in value):
        raise click.BadParameter(f"{value[:40]!r} is not an AWS tag key")
    return value


def _opt_in(ctx, param, value):
    key, sep, wanted = (value or "").partition("=")
    if not sep or not wanted.strip():
        raise click.BadParameter("give KEY=VALUE, e.g. prtg-ai:auto-stop=true")
    return _tag_key(ctx, param, key), wanted.strip()


def _window(ctx, param, value):
    try:
        return ip.parse_windows(value)
    except ip.WindowError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group("act", context_settings={"help_option_names": ["-h", "--help"]})
def act() -> None:
    """Act on what the sensors see (dry run unless --execute; every decision audited)."""


@act.command("stop-idle-gpus")
@click.option("--execute", is_flag=True, help="Really stop instances. Without it: a dry run that only reports.")
@click.option("--hibernate", is_flag=True, help="Hibernate instead of stop where the instance has hibernation "
                                                "configured (others are stopped). Never terminates.")
@click.option("--region", "regions", multiple=True, metavar="REGION",
              help="Region to review (repeatable; default: the profile's / AWS_DEFAULT_REGION).")
@click.option("--profile", metavar="NAME", help="AWS profile (default: boto3's chain).")
@click.option("--idle-for", "idle_for", default="60m", show_default=True, metavar="DURATION",
              callback=_duration("idle_for", 600, 7 * 86400), help="How long CloudWatch must show it idle.")
@click.option("--min-age", "min_age", default="2h", show_default=True, metavar="DURATION",
              callback=_duration("min_age", 0, 365 * 86400), help="Never stop an instance started less than this ago.")
@click.option("--max-instances", type=click.IntRange(0, 100), default=ip.DEFAULT_MAX_INSTANCES, show_default=True,
              help="Stop at most this many per run (the most expensive first).")
@click.option("--opt-in-tag", "opt_in", default=f"{ip.DEFAULT_OPT_IN_KEY}={ip.DEFAULT_OPT_IN_VALUE}",
              show_default=True, metavar="KEY=VALUE", callback=_opt_in,
              help="Only instances with this tag (value case-insensitive). Change the IAM policy's condition to match.")
@click.option("--protect-tag", "protect_key", default=ip.DEFAULT_PROTECT_KEY, show_default=True, metavar="KEY",
              callback=_tag_key, help="Instances with this tag (any value) are never stopped.")
@click.option("--window-tag", "window_key", default=ip.DEFAULT_WINDOW_KEY, show_default=True, metavar="KEY",
              callback=_tag_key, help="Tag holding an instance's own maintenance windows.")
@click.option("--maintenance-window", "windows", default="", metavar="SPEC", callback=_window,
              help="No stops inside these UTC windows, e.g. 'Mon-Fri@08:00-18:00 Sat+Sun@00:00-00:00'.")
@click.option("--idle-gpu-percent", type=click.FloatRange(0, 100), default=ip.DEFAULT_IDLE_GPU_PERCENT,
              show_default=True, help="Idle when GPU utilisation (nvidia_smi_utilization_gpu) stays below this.")
@click.option("--idle-cpu-percent", type=click.FloatRange(0, 100), default=ip.DEFAULT_IDLE_CPU_PERCENT,
              show_default=True, help="Without GPU metrics: idle when CPUUtilization stays below this...")
@click.option("--idle-network-kib-s", "idle_net", type=click.FloatRange(0, 1e7),
              default=ip.DEFAULT_IDLE_NETWORK_KIB_S, show_default=True,
              help="...and NetworkIn and NetworkOut each stay below this many KiB/s.")
@click.option("--family", "families", multiple=True, metavar="FAMILY",
              help="Instance families counted as GPU (repeatable; default: gpu_spend's list plus any type "
                   "with GPUs or accelerators).")
@click.option("--lock-wait", "lock_wait", default="120s", show_default=True, metavar="DURATION",
              callback=_duration("lock_wait", 0, 3600), help="How long to wait for a concurrent run to finish.")
@click.option("--prtg-sensorid", "sensorid", metavar="ID", help="PRTG %sensorid of the triggering sensor (audit only).")
@click.option("--prtg-sensor", "sensor", metavar="NAME", help="PRTG %sensor (audit only).")
@click.option("--prtg-device", "device", metavar="NAME", help="PRTG %device (audit only).")
@click.option("--prtg-status", "status", metavar="TEXT", help="PRTG %status (audit only).")
@click.option("--prtg-message", "message", metavar="TEXT", help="PRTG %message (audit only; never acted upon).")
@click.option("--prtg-datetime", "when", metavar="TEXT", help="PRTG %datetime (audit only).")
def stop_idle_gpus(execute, hibernate, regions, profile, idle_for, min_age, max_instances, opt_in, protect_key,
                   window_key, windows, idle_gpu_percent, idle_cpu_percent, idle_net, families, lock_wait,
                   sensorid, sensor, device, status, message, when) -> None:
    """Stop (or hibernate) opted-in GPU instances that CloudWatch shows idle; never terminate.

    Stopped only when all hold: a GPU/accelerator instance, tagged prtg-ai:auto-stop=true,
    not tagged prtg-ai:protect, outside maintenance windows, running for --min-age, and
    idle for --idle-for by GPU utilisation (else CPU and network). At most
    --max-instances per run. Every decision goes to the audit log in the state folder.

    Exit codes: 0 done; 1 an AWS call failed (see the summary); 2 bad option; 3 no lock or audit log.
    """
    import re

    from prtg_ai.actions import stop_idle_gpus as action
    from prtg_ai.core.context import Context
    from prtg_ai.core.log import prepare

    fams = []
    for value in families:
        fams += [f.strip() for f in value.split(",") if f.strip()]
    for f in fams:
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,20}", f):
            raise click.BadParameter(f"{f!r} is not an instance family such as p5 or g6e", param_hint="--family")
    for r in regions:
        if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d{1,2}", r):
            raise click.BadParameter(f"{r!r} is not an AWS region name such as us-east-1", param_hint="--region")
    ctx = Context()
    prepare(ctx.state_path, ctx.env, ctx.secrets)
    rules = ip.Rules(opt_in_key=opt_in[0], opt_in_value=opt_in[1], protect_key=protect_key, window_key=window_key,
                     windows=windows, min_age_s=min_age, idle_for_s=idle_for, max_instances=max_instances,
                     families=sorted(set(fams)) or ip.sm.GPU_FAMILIES,
                     limits=ip.Thresholds(idle_gpu_percent, idle_cpu_percent, idle_net))
    opts = action.Options(rules, regions=sorted(set(regions)), profile=(profile or "").strip() or None,
                          execute=execute, hibernate=hibernate, lock_wait_s=lock_wait,
                          trigger={"sensorid": sensorid, "sensor": sensor, "device": device, "status": status,
                                   "message": message, "datetime": when})
    sys.exit(action.run(ctx, opts, out=lambda line: click.echo(line)))
