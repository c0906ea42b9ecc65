"""``prtg-ai act stop-idle-gpus``: stop opted-in GPU instances that CloudWatch shows idle.

Started by a PRTG "Execute Program" notification (typically on ``gpu_spend``'s Idle
Burn Rate channel), or by hand. The notification only says "look now": every decision
comes from live evidence read here, never from the notification's text.

Reads (through ``prtg_ai.backends.aws``, the only boto3 user), per region:
EC2 ``DescribeInstances`` (running instances, tags, launch time, hibernation),
``DescribeInstanceTypes`` and Pricing ``GetProducts`` (the ``gpu_spend`` catalogue and
its shared cache), ``DescribeSpotPriceHistory`` (spot candidates), CloudWatch
``ListMetrics``/``GetMetricData`` (CWAgent ``nvidia_smi_utilization_gpu``, AWS/EC2
``CPUUtilization``, ``NetworkIn``, ``NetworkOut``). Acts with ``StopInstances``
(optionally ``Hibernate``), never anything else. Least-privilege policy:
``installer/assets/iam/prtg-ai-stop-idle-gpus-policy.json`` (StopInstances only on
instances carrying the opt-in tag).

Safety:

* a dry run unless ``--execute``; every decision is appended to the audit log
  (``audit.py``) before the summary is printed; a run that cannot write the audit
  log does nothing;
* the whole run holds one cross-process lock (``core/locking.py``), and each
  instance's state and tags are read again right before ``StopInstances``: two
  notifications at once stop each instance once;
* an AWS failure stops nothing it concerns, is recorded, and makes the exit code 1.

Exit codes: 0 every decision made and carried out; 1 an AWS call failed (the summary
says which) or an internal error; 2 a bad option; 3 the lock or the audit log was
unavailable (nothing done).
"""

from __future__ import annotations

import math
import os
import time
from datetime import datetime, timezone

from prtg_ai.gpu_spend import spend_model as sm
from prtg_ai.actions import audit
from prtg_ai.actions import idle_policy as ip
from prtg_ai.core.context import Context
from prtg_ai.core.errors import ConfigError
from prtg_ai.core.locking import FileLock, LockTimeout
from prtg_ai.core.log import get_logger

log = get_logger("prtg_ai.act")
ACTION = "stop-idle-gpus"
EXIT_OK, EXIT_AWS, EXIT_USAGE, EXIT_LOCAL = 0, 1, 2, 3
DEFAULT_LOCK_WAIT_S = 120.0
MAX_TRIGGER_TEXT = 200
MAX_GPU_SERIES = 32            # per instance: an 8-GPU box has 8; more is a misconfigured agent
SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "PRTG_AI_TOKEN", "prtg_windowspassword",
              "prtg_linuxpassword", "prtg_snmpcommunity")
TRIGGER_FIELDS = ("sensorid", "sensor", "device", "status", "message", "datetime")


class Options:
    """What one run is asked to do."""

    def __init__(self, rules: ip.Rules, regions: list[str] | None = None, profile: str | None = None,
                 execute: bool = False, hibernate: bool = False, lock_wait_s: float = DEFAULT_LOCK_WAIT_S,
                 trigger: dict | None = None):
        self.rules = rules
        self.regions = list(regions or [])
        self.profile = profile
        self.execute = execute
        self.hibernate = hibernate
        self.lock_wait_s = lock_wait_s
        self.trigger = clean_trigger(trigger or {})


def clean_trigger(raw: dict) -> dict:
    """PRTG's placeholders as given, recorded for the audit: printable, short, and never acted upon."""
    out = {}
    for key in TRIGGER_FIELDS:
        value = raw.get(key)
        if value is None or value == "":
            continue
        text = "".join(ch if ch.isprintable() else " " for ch in str(value)).strip()
        out[key] = text[:MAX_TRIGGER_TEXT]
    out["by"] = "prtg-notification" if out else "manual"
    return out


class Decision:
    """One instance's outcome: what was decided, on what evidence, and what was done."""

    def __init__(self, inst: dict, region: str):
        self.inst = inst
        self.region = region
        self.decision = "skip"        # stop | skip | fail
        # stopped | hibernated | would-stop | would-hibernate | already-stopped | stop-failed | none
        self.action = "none"
        self.reason_code = ""
        self.reason = ""
        self.evidence: dict | None = None
        self.usd_per_hour: float | None = None
        self.hibernate = False

    def skip(self, code: str, text: str) -> "Decision":
        self.decision, self.action, self.reason_code, self.reason = "skip", "none", code, text
        return self

    def record(self, run_id: str, mode: str, trigger: dict, now: float) -> dict:
        return {"kind": "decision", "time": audit.utc_iso(now), "run": run_id, "action_name": ACTION,
                "mode": mode, "trigger": trigger, "region": self.region, "instance": self.inst.get("id"),
                "type": self.inst.get("type"), "lifecycle": self.inst.get("lifecycle"),
                "launch_time": audit.utc_iso(self.inst["launch_time"]) if self.inst.get("launch_time") else None,
                "decision": self.decision, "action": self.action, "reason_code": self.reason_code,
                "reason": self.reason, "evidence": self.evidence, "usd_per_hour": self.usd_per_hour}

    def line(self) -> str:
        label = {"stopped": "STOPPED", "hibernated": "HIBERNATED", "would-stop": "WOULD STOP",
                 "would-hibernate": "WOULD HIBERNATE", "stop-failed": "FAILED",
                 "already-stopped": "SKIPPED"}.get(self.action, "FAILED" if self.decision == "fail" else "SKIPPED")
        price = f" ${self.usd_per_hour:,.2f}/h" if self.usd_per_hour is not None and self.decision != "skip" else ""
        return f"{label} {self.inst.get('id')} {self.inst.get('type')} {self.region}{price}: {self.reason}"


class Run:
    """One execution of the action: acquire -> decide -> act -> summarise."""

    def __init__(self, ctx: Context, opts: Options, out=print):
        self.ctx = ctx
        self.opts = opts
        self.out = out
        for var in SECRET_ENV:
            ctx.secrets.register(ctx.env.get(var))
        self.now = ctx.now()
        self.run_id = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(self.now))}-{os.getpid()}"
        self.mode = "execute" if opts.execute else "dry-run"
        self.log = audit.AuditLog(ctx.state_path, ctx.secrets.scrub)
        self.decisions: list[Decision] = []
        self.errors: list[dict] = []
        self.notes: list[str] = []

    # -- entry -----------------------------------------------------------------------
    def execute(self) -> int:
        try:
            self.log.check_writable()
        except OSError as exc:
            return self._local_failure(f"the audit log {self.log.path} cannot be written "
                                       f"({exc.strerror or type(exc).__name__}); nothing was done. "
                                       "Set PRTG_AI_STATE_DIR to a folder the notification's account can write")
        lock = FileLock(os.path.join(self.ctx.state_path, audit.LOCK_NAME), timeout=self.opts.lock_wait_s)
        try:
            lock.acquire()
        except (LockTimeout, OSError) as exc:
            why = (f"another {ACTION} run held the lock for {self.opts.lock_wait_s:g} s"
                   if isinstance(exc, LockTimeout) else f"the lock file cannot be opened ({exc.strerror or exc})")
            return self._local_failure(f"{why}; nothing was done")
        try:
            # Time starts when the lock is ours: a run that waited judges the world as it is now.
            self.now = self.ctx.now()
            return self._locked()
        finally:
            lock.release()

    def _local_failure(self, text: str) -> int:
        self.out(self._scrub(f"{ACTION} ERROR: {text}."))
        return EXIT_LOCAL

    def _locked(self) -> int:
        from prtg_ai.backends import aws
        from prtg_ai.backends.aws import AwsError

        session = aws.Aws(self.opts.profile, self.ctx.env)
        regions = self.opts.regions
        if not regions:
            try:
                region = session.default_region()
            except AwsError as exc:
                region = None
                self._error("*", "credentials", exc)
            if not region and not self.errors:
                raise ConfigError("region", "no region given and boto3 has none (AWS_DEFAULT_REGION or the "
                                            "profile's region); give --region")
            regions = [region] if region else []
        candidates: list[Decision] = []
        for region in regions:
            candidates += self._review_region(session, region)
        chosen, rest = ip.pick([{"id": d.inst["id"], "usd_per_hour": d.usd_per_hour,
                                 "launch_time": d.inst.get("launch_time"), "d": d} for d in candidates],
                               self.opts.rules.max_instances)
        for item in rest:
            d = item["d"]
            d.skip(ip.OVER_CAP, f"over the per-run cap (--max-instances {self.opts.rules.max_instances}); "
                                f"{d.reason}")
            self._write(d)
        for item in chosen:
            self._act(session, item["d"])
        return self._summary()

    # -- decide ------------------------------------------------------------------------
    def _review_region(self, session, region: str) -> list[Decision]:
        """Decide every relevant instance of ``region``; return the idle ones that pass every rule."""
        from prtg_ai.gpu_spend import gpu_spend
        from prtg_ai.backends.aws import AwsError

        rules = self.opts.rules
        try:
            instances = session.instances_for_review(region)
            types, price_of = gpu_spend.type_catalog(self.ctx, session, region, instances, rules.families,
                                                     self.now, self.notes)
        except AwsError as exc:
            self._error(region, "instances", exc)
            return []
        pending: list[Decision] = []
        for inst in sorted(instances, key=lambda i: i["id"]):
            info = sm.TypeInfo.from_json(types.get(inst["type"], {}))
            d = Decision(inst, region)
            failed = ip.precheck(inst, info, rules, self.now)
            if failed is not None:
                if failed[0] == ip.NOT_GPU and not ip.opted_in(inst.get("tags") or {}, rules):
                    continue  # neither GPU nor opted in: not this action's business, not logged
                self._write(d.skip(*failed))
                continue
            pending.append(d)
        if not pending:
            return []
        try:
            evidence = self._evidence(session, region, pending)
        except AwsError as exc:
            self._error(region, "metrics", exc)
            for d in pending:
                self._write(d.skip(ip.NO_EVIDENCE, f"no evidence: {_problem(exc)}"))
            return []
        idle = []
        for d in pending:
            ev = evidence[d.inst["id"]]
            d.evidence = ev.to_json()
            if ev.state != ip.IDLE:
                self._write(d.skip(ev.state, ev.text))
                continue
            d.reason_code, d.reason = ip.IDLE, ev.text
            idle.append(d)
        self._price(session, region, idle, price_of)
        return idle

    def _evidence(self, session, region: str, pending: list[Decision]) -> dict[str, ip.Evidence]:
        """CloudWatch points of each pending instance over the idle window, assessed."""
        period = ip.PERIOD_S
        start = math.floor((self.now - self.opts.rules.idle_for_s) / period) * period
        series = session.gpu_metric_series(region)
        queries, owner = [], {}

        def ask(iid, kind, namespace, metric, dims, stat):
            qid = f"q{len(queries)}"
            queries.append({"id": qid, "namespace": namespace, "metric": metric, "dims": dims, "stat": stat})
            owner[qid] = (iid, kind)

        for d in pending:
            iid = d.inst["id"]
            for dims in series.get(iid, [])[:MAX_GPU_SERIES]:
                ask(iid, f"gpu{len(queries)}", "CWAgent", "nvidia_smi_utilization_gpu", dims, "Maximum")
            ec2 = [{"Name": "InstanceId", "Value": iid}]
            ask(iid, "cpu", "AWS/EC2", "CPUUtilization", ec2, "Maximum")
            ask(iid, "in", "AWS/EC2", "NetworkIn", ec2, "Sum")
            ask(iid, "out", "AWS/EC2", "NetworkOut", ec2, "Sum")
        points = session.metric_points(region, queries, datetime.fromtimestamp(start, tz=timezone.utc),
                                       datetime.fromtimestamp(self.now, tz=timezone.utc), period)
        found: dict[str, dict[str, list]] = {d.inst["id"]: {} for d in pending}
        for qid, pts in points.items():
            if qid in owner:
                iid, kind = owner[qid]
                found[iid].setdefault(kind, []).extend(pts)
        out = {}
        for iid, kinds in found.items():
            gpu = [pts for kind, pts in kinds.items() if kind.startswith("gpu")]
            out[iid] = ip.assess(gpu, kinds.get("cpu"), kinds.get("in"), kinds.get("out"), start, self.now,
                                 self.opts.rules.limits, period)
        return out

    def _price(self, session, region: str, idle: list[Decision], price_of: dict[str, float]) -> None:
        """$/h of each idle candidate: list price, spot instances at their AZ's spot price."""
        from prtg_ai.backends.aws import AwsError

        spot_types = sorted({d.inst["type"] for d in idle if d.inst.get("lifecycle") == "spot"})
        spot: dict[str, dict[str, float]] = {}
        if spot_types:
            try:
                spot = session.spot_prices(region, spot_types, datetime.fromtimestamp(self.now, tz=timezone.utc))
            except AwsError as exc:
                self.notes.append(f"{_problem(exc)} Spot candidates are unpriced.")
        for d in idle:
            if d.inst.get("lifecycle") == "spot":
                d.usd_per_hour = sm.spot_price_for(spot.get(d.inst["type"], {}), d.inst.get("az", ""))
            else:
                d.usd_per_hour = price_of.get(d.inst["type"])

    # -- act -----------------------------------------------------------------------------
    def _act(self, session, d: Decision) -> None:
        from prtg_ai.backends.aws import AwsError

        inst = d.inst
        d.hibernate = bool(self.opts.hibernate and inst.get("hibernation"))
        verb = "hibernate" if d.hibernate else "stop"
        if self.opts.hibernate and not d.hibernate:
            d.reason += "; hibernation not configured on it: a plain stop"
        d.decision = "stop"
        if not self.opts.execute:
            d.action = f"would-{verb}"
            self._write(d)
            return
        try:
            # Read again under the lock: another run (or a person) may have stopped or re-tagged it.
            now_seen = session.instances_for_review(d.region, [inst["id"]])
        except AwsError as exc:
            self._stop_failed(d, "recheck", exc, inst["id"],
                              f"not stopped: its state could not be re-checked ({_problem(exc)})")
            return
        current = now_seen[0] if now_seen else {"state": "gone", "tags": {}}
        if current.get("state") != "running":
            d.skip("not-running", f"already {current.get('state') or 'not running'} (another run or a person "
                                  "stopped it); nothing to do")
            d.action = "already-stopped"
            self._write(d)
            return
        if not ip.opted_in(current.get("tags") or {}, self.opts.rules) or \
                self.opts.rules.protect_key in (current.get("tags") or {}):
            self._write(d.skip("tags-changed", "its tags changed since it was assessed (opt-in removed or "
                                               "protected); not stopped"))
            return
        try:
            state = session.stop_instance(d.region, inst["id"], hibernate=d.hibernate)
        except AwsError as exc:
            self._stop_failed(d, "stop", exc, inst["id"], f"{verb} failed: {_problem(exc)}")
            return
        d.action = "hibernated" if d.hibernate else "stopped"
        d.evidence = {**(d.evidence or {}), "state_after": state}
        try:
            audit.record_stop(self.ctx.state_path, self.now, inst["id"], {
                "usd_per_hour": d.usd_per_hour, "at": self.now, "action": d.action, "region": d.region,
                "type": inst.get("type")})
        except OSError as exc:
            self.notes.append(f"today's totals could not be saved ({exc.strerror or exc}); the audit log has it")
        self._write(d)

    # -- record and summarise -------------------------------------------------------------
    def _write(self, d: Decision) -> None:
        if d not in self.decisions:
            self.decisions.append(d)
        self.log.write(d.record(self.run_id, self.mode, self.opts.trigger, self.now))

    def _stop_failed(self, d: Decision, step: str, exc, instance: str, reason: str) -> None:
        """Record a stop that AWS refused at ``step`` (re-check or stop): the decision and the error."""
        d.decision, d.action, d.reason = "fail", "stop-failed", reason
        self._error(d.region, step, exc, instance)
        self._write(d)

    def _error(self, region: str, step: str, exc, instance: str | None = None) -> None:
        entry = {"region": region, "step": step, "error_kind": getattr(exc, "kind", "failed"), "text": _problem(exc)}
        if instance:
            entry["instance"] = instance
        self.errors.append(entry)
        self.log.write({"kind": "error", "time": audit.utc_iso(self.now), "run": self.run_id, "mode": self.mode,
                        "action_name": ACTION, "trigger": self.opts.trigger, **entry})

    def _summary(self) -> int:
        acted = [d for d in self.decisions if d.decision == "stop"]
        failed = [d for d in self.decisions if d.decision == "fail"]
        skipped = [d for d in self.decisions if d.decision == "skip"]
        usd = sum(d.usd_per_hour or 0.0 for d in acted)
        code = EXIT_AWS if self.errors else EXIT_OK
        for d in acted + failed + skipped:
            self.out(self._scrub(d.line()))
        for e in self.errors:
            if "instance" not in e:
                self.out(self._scrub(f"ERROR {e['region']}: {e['text']}"))
        for note in dict.fromkeys(self.notes):
            self.out(self._scrub(f"NOTE {note}"))
        if self.opts.execute:
            head = f"{ACTION}: {len(acted)} stopped (${usd:,.2f}/h avoided)"
        else:
            head = f"{ACTION} DRY RUN (add --execute to act): {len(acted)} would stop (${usd:,.2f}/h)"
        tail = f", {len(skipped)} skipped, {len(failed)} failed"
        if self.errors:
            tail += f"; {len(self.errors)} AWS error(s), exit {code}"
        self.out(self._scrub(f"{head}{tail}. Audit log: {self.log.path}"))
        self.log.write({"kind": "run", "time": audit.utc_iso(self.now), "run": self.run_id, "mode": self.mode,
                        "action_name": ACTION, "trigger": self.opts.trigger, "exit": code,
                        "totals": {"stop": len(acted), "skip": len(skipped), "fail": len(failed),
                                   "usd_per_hour": round(usd, 4)},
                        "errors": self.errors, "notes": list(dict.fromkeys(self.notes))[:10]})
        return code

    def _scrub(self, text: str) -> str:
        return self.ctx.secrets.scrub(text)


def _problem(exc) -> str:
    """An AwsError's text with the hint (which names the action's policy for a denial)."""
    # The hint of a denial names the missing action and policy; the others' hints speak of sensors.
    if getattr(exc, "kind", "") in ("denied", "credentials") or not hasattr(exc, "problem"):
        message = exc.message() if hasattr(exc, "message") else str(exc)
    else:
        message = exc.problem
    return " ".join(message.split())[:400]


def run(ctx: Context, opts: Options, out=print) -> int:
    """Run the action; print the summary through ``out``; return the exit code."""
    try:
        return Run(ctx, opts, out).execute()
    except ConfigError as exc:
        out(ctx.secrets.scrub(f"{ACTION} ERROR: {exc.message()}"))
        return EXIT_USAGE
    except Exception as exc:  # a bug: PRTG's notification log gets one clear line, the log the traceback
        log.exception("%s failed", ACTION)
        out(ctx.secrets.scrub(f"{ACTION} ERROR: internal error ({type(exc).__name__}); instances stopped before it "
                              f"are in the audit log; details in prtg-ai.log in {ctx.state_path}."))
        return EXIT_AWS
