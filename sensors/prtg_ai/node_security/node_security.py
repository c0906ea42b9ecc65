"""``node_security``: exposed AI services, SSH access attempts and rogue GPU processes on a node.

Reads:

* the node's listening TCP sockets and their processes from procfs
  (``prtg_ai.backends.listeners``), and sends each listener on a non-loopback address
  a few harmless read-only requests from the node itself (``backends.service_probe``:
  one GET or a Redis PING per candidate service, short timeout, byte cap, no
  redirects, no credentials) to tell which AI service answers without authentication;
* sshd's messages since the last scan from the journal or the auth log
  (``backends.authlog``: ``journalctl`` with a stored cursor, or ``auth.log``/``secure``
  with a stored inode and offset, rotation- and truncation-safe, byte-capped);
* the processes on the GPUs (``backends.nvml``) and their names, users and containers
  from procfs.

Keeps in the state folder: when learning started, the learned listening ports and
GPU process names, the log position, the addresses logins came from.

Needs: Linux. Root (or ``CAP_SYS_PTRACE`` plus group ``adm``/``systemd-journal``) to
name other users' processes and read the logs; without it those parts say what is
missing. NVML (the NVIDIA driver) for the GPU channel; without it that channel is
omitted.

Only a bounded, scrubbed summary reaches PRTG: addresses, ports, service and process
names. No log line, user name from a failed login or probe answer is echoed.
"""

from __future__ import annotations

import fnmatch
import sys

from prtg_ai.backends import authlog, listeners, procinfo, service_probe
from prtg_ai.core.errors import ConfigError, SensorError
from prtg_ai.core.params import Param, format_duration
from prtg_ai.core.sensor import Sensor
from prtg_ai.core.state import StateStore
from prtg_ai.node_security.services import (
    BY_KEY, NOT_HTTP, OPEN, PROTECTED, judge_http, judge_redis, probe_order,
)
from prtg_ai.prtg.model import SensorResult

# Known GPU cryptocurrency miners, compared with process names lower-cased, extension dropped.
MINERS = (
    "xmrig", "xmrig-cuda", "xmrig-nvidia", "t-rex", "trex", "lolminer", "nbminer", "phoenixminer",
    "gminer", "miner",  # GMiner's executable is called "miner"
    "nanominer", "teamredminer", "ethminer", "bminer", "srbminer-multi", "srbminer", "rigel", "onezerominer",
    "wildrig", "wildrig-multi", "ccminer", "excavator", "z-enemy", "kawpowminer", "nheqminer", "cpuminer",
    "bzminer", "miniz", "ewbf", "claymore", "ethdcrminer64", "nsfminer", "qubitcoin-miner",
)
# A command line with a mining-pool URL is a miner, whatever its executable is called.
STRATUM_MARKERS = ("stratum+tcp://", "stratum+ssl://", "stratum+tls://", "stratum2+tcp://", "stratum1+tcp://")
# Always allowed on GPUs: interpreters and servers of the common AI frameworks, and the display stack.
DEFAULT_GPU_ALLOW = (
    "python", "python3", "python3.*", "python2*", "pt_main_thread", "torchrun", "deepspeed", "accelerate",
    "ray::*", "raylet", "tritonserver", "vllm", "vllm-*", "text-generation-*", "llama-server", "llama-cli",
    "ollama", "ollama_llama_server", "ollama_runner", "sglang*", "trtllm-*", "tensorflow_model_server",
    "java", "julia", "R", "jupyter*", "ipykernel*", "nv-hostengine", "dcgm*", "nvidia-*", "Xorg", "Xwayland",
    "gnome-shell", "kwin_*",
)
MAX_ALLOW = 32
MAX_PATTERN_LEN = 128
MAX_ACCEPT_PORTS = 256
MAX_PROBE_REQUESTS = 96         # per scan, all listeners together
MAX_PROBE_BYTES = 1024 * 1024   # per scan, all answers together
PROBE_BUDGET_S = 15.0           # wall time for all probes of a scan (below PRTG's 60 s)
JOURNAL_TIMEOUT_S = 10.0
MAX_LOGIN_SOURCES = 1024
MAX_NAMES = 256
MAX_SHOWN = 6
MAX_OPEN_SHOWN = 12  # the alarm's own message: name them all (PRTG keeps 2000 characters)


class NodeSecuritySensor(Sensor):
    id = "node_security"
    title = "Node security"
    summary = ("Exposed AI services answering without authentication, new listening ports, SSH failures and "
               "new login sources, miners and unknown processes on the GPUs.")
    interval = 300
    params = (
        Param("probe", "choice", "probe exposed listeners for AI services (read-only requests from the node "
              "itself)", choices=("yes", "no"), default="yes", metavar="yes|no"),
        Param("probe_timeout", "duration", "timeout of each probe request", default=1.0, minimum=0.1,
              maximum=5.0, metavar="DURATION"),
        Param("accept_ports", "str", "exposed TCP ports that are expected (not counted as new), e.g. 22,443",
              multiple=True, default=(), metavar="PORTS"),
        Param("learn", "duration", "how long after the first scan listening ports and GPU process names are "
              "learnt as normal", default=86400.0, minimum=0.0, maximum=30 * 86400.0, metavar="DURATION"),
        Param("auth_source", "choice", "where sshd's messages come from: auto (the auth log file if there is "
              "one, else the journal), journal, file, off", choices=("auto", "journal", "file", "off"),
              default="auto", state_key=True, metavar="auto|journal|file|off"),
        Param("auth_log", "path", "auth log file to read (default /var/log/auth.log or /var/log/secure)",
              default=None, state_key=True, metavar="FILE"),
        Param("gpu_allow", "glob", "process names allowed on the GPUs besides the common frameworks and the "
              "learnt ones (repeatable or comma-separated)", multiple=True, default=(), metavar="GLOB"),
        Param("gpu_processes", "choice", "check the processes on the GPUs: auto (when an NVIDIA driver is "
              "loaded), on, off", choices=("auto", "on", "off"), default="auto", metavar="auto|on|off"),
    )

    # -- parameters ------------------------------------------------------------------
    def _accepted_ports(self) -> set[int]:
        words = list(self.values["accept_ports"] or ())
        if len(words) > MAX_ACCEPT_PORTS:
            raise ConfigError("accept_ports", f"{len(words)} ports given; at most {MAX_ACCEPT_PORTS} are accepted")
        ports = set()
        for w in words:
            if not w.isdigit() or not 1 <= int(w) <= 65535:
                raise ConfigError("accept_ports", f"{w[:20]!r} is not a TCP port (1-65535)")
            ports.add(int(w))
        return ports

    def _allow_patterns(self) -> list[str]:
        patterns = list(self.values["gpu_allow"] or ())
        if len(patterns) > MAX_ALLOW:
            raise ConfigError("gpu_allow", f"{len(patterns)} patterns given; at most {MAX_ALLOW} are accepted")
        for p in patterns:
            if len(p) > MAX_PATTERN_LEN:
                raise ConfigError("gpu_allow", f"a pattern is {len(p)} characters long; at most {MAX_PATTERN_LEN}")
        return patterns

    # -- the scan --------------------------------------------------------------------
    def run(self) -> SensorResult:
        accept = self._accepted_ports()
        allow = self._allow_patterns()
        if not sys.platform.startswith("linux"):
            raise SensorError("node_security runs on Linux GPU nodes only.",
                              "Add it to the node's device (SSH Script Advanced or the agent), not to the probe.")
        proc_root = self.ctx.proc_path
        socks, problems = listeners.listening(proc_root)
        if problems and not socks:
            raise SensorError("Cannot read the listening sockets (" + "; ".join(problems)[:300] + ").",
                              "Is procfs mounted? In a container, share the host's network namespace (hostNetwork).")
        exposed = [s for s in socks if not s.loopback]
        ports = sorted({s.port for s in exposed})
        started = self.ctx.monotonic()
        pids = listeners.owners(proc_root, {s.inode for s in exposed}, started + 5.0, self.ctx.monotonic)
        procs: dict[int, listeners.ProcessInfo] = {}

        def proc_of(pid):
            if pid is None:
                return None
            if pid not in procs:
                procs[pid] = listeners.describe(proc_root, pid)
            return procs[pid]

        result = SensorResult()
        findings = self._probe(exposed, pids, proc_of, result) if self.values["probe"] == "yes" else None
        if findings is None:
            findings = {"open": [], "protected": []}
            result.note("Probing is off (--probe no): unauthenticated services are not checked")

        gpu = self._gpu_processes(proc_root, result)
        auth = self._auth(result)
        store = StateStore(self.ctx.state_path)
        with store.session(self.id, self.state_identity(), max_samples=1) as state:
            now = self.ctx.now()
            data = state.data
            since = data.get("since")
            first = not isinstance(since, (int, float)) or since > now + 5
            if first:
                since = now
            learning = first or now - since < self.values["learn"]
            known_ports = {p for p in data.get("ports", []) if isinstance(p, int)}
            new_ports = [] if learning else [p for p in ports if p not in known_ports and p not in accept]
            if learning:
                known_ports.update(ports)
            gpu_view = self._judge_gpu(gpu, allow, data, learning)
            auth_view = self._judge_auth(auth, data, now)
            data.update(since=since, t=now, ports=sorted(known_ports)[:4096])
            for n in state.notes:
                result.note(n)

        self._channels(result, findings, exposed, ports, new_ports, pids, proc_of, learning, since, gpu_view,
                       auth_view)
        return result

    # -- exposed services ------------------------------------------------------------
    def _probe(self, exposed, pids, proc_of, result: SensorResult) -> dict:
        timeout = self.values["probe_timeout"]
        budget = service_probe.Budget(MAX_PROBE_BYTES, MAX_PROBE_REQUESTS,
                                      self.ctx.monotonic() + PROBE_BUDGET_S, self.ctx.monotonic)
        found = {"open": [], "protected": []}
        done: set = set()
        for sock in sorted(exposed, key=lambda s: (s.port, s.family, s.address)):
            pid = pids.get(sock.inode)
            key = (sock.port, pid if pid is not None else sock.probe_address)
            if key in done:
                continue
            done.add(key)
            proc = proc_of(pid)
            hints = " ".join((*(proc.names if proc else ()), *(proc.argv[:8] if proc else ()))).lower()
            verdict, service = self._identify(sock, hints, budget, timeout)
            if verdict == OPEN:
                found["open"].append((service, sock, proc))
            elif verdict == PROTECTED:
                found["protected"].append((service, sock, proc))
            if not budget.can_send():
                result.note(f"Probe budget used up after {budget.requests} requests: some listeners were not checked")
                break
        return found

    def _identify(self, sock, hints: str, budget, timeout: float):
        host, port = sock.probe_address, sock.port
        redis_tried = False
        for service in probe_order(port, hints):
            if not budget.can_send():
                return None, None
            if service.key == "redis":
                redis_tried = True
                answer = service_probe.redis_ping(host, port, timeout, budget)
                verdict = judge_redis(answer.kind, answer.body)
            else:
                answer = service_probe.http_get(host, port, service.path, timeout, budget)
                verdict = judge_http(service, answer.kind, answer.status, answer.body)
                if answer.kind == "resp" and not redis_tried and budget.can_send():
                    # A Redis-protocol reply to HTTP: ask it as Redis instead.
                    redis_tried = True
                    answer = service_probe.redis_ping(host, port, timeout, budget)
                    return judge_redis(answer.kind, answer.body), BY_KEY["redis"]
            if verdict in (OPEN, PROTECTED):
                return verdict, service
            if verdict == NOT_HTTP and service.key != "redis":
                return None, None  # not HTTP at all (ssh, a database, TLS): no other probe fits
        return None, None

    # -- access attempts ---------------------------------------------------------------
    def _auth(self, result: SensorResult):
        source = self.values["auth_source"]
        if source == "off":
            return None
        path = self.values["auth_log"]
        if source in ("auto", "file"):
            file = str(path) if path is not None else authlog.default_file()
            if file is not None or source == "file":
                if file is None:
                    result.note("SSH channels omitted: neither /var/log/auth.log nor /var/log/secure exists "
                                "(give --auth-log FILE or --auth-source journal)")
                    return None
                return ("file", file)
        if authlog.journalctl_path() is None:
            result.note("SSH channels omitted: no auth log file and no journalctl on this host")
            return None
        return ("journal", None)

    def _judge_auth(self, auth, data: dict, now: float):
        if auth is None:
            return None
        from prtg_ai.node_security.auth import MAX_TRACKED_PIDS, count, syslog_message

        kind, file = auth
        stored = data.get("auth") if isinstance(data.get("auth"), dict) else {}
        if stored.get("kind") != kind:
            stored = {}
        try:
            if kind == "file":
                read = authlog.read_file(file, stored.get("position"))
                messages = [m for m in map(syslog_message, read.lines) if m is not None]
            else:
                cursor = stored.get("position", {}).get("cursor") if isinstance(stored.get("position"), dict) else None
                read = authlog.read_journal(cursor if isinstance(cursor, str) else None, JOURNAL_TIMEOUT_S,
                                            self.ctx.env.get("PRTG_AI_JOURNAL_DIR") or None)
                messages = read.lines
        except authlog.AuthLogError as exc:
            return {"problem": str(exc), "kind": kind}
        before = {p for p in stored.get("failed_pids", []) if isinstance(p, int)}
        counted = count(messages, before)
        known = [a for a in data.get("login_sources", []) if isinstance(a, str)][-MAX_LOGIN_SOURCES:]
        known_set = set(known)
        new_logins = []
        for login in counted.logins:
            if login.address not in known_set:
                if not read.first:
                    new_logins.append(login)
                known_set.add(login.address)
                known.append(login.address)
        prev_t = stored.get("t")
        minutes = (now - prev_t) / 60.0 if isinstance(prev_t, (int, float)) and now > prev_t else None
        data["login_sources"] = known[-MAX_LOGIN_SOURCES:]
        data["auth"] = {"kind": kind, "position": read.position, "t": now,
                        "failed_pids": sorted(counted.failed_pids)[-MAX_TRACKED_PIDS:]}
        return {"kind": kind, "source": read.source, "first": read.first or minutes is None,
                "failures": 0 if read.first else counted.failures,
                "sources": set() if read.first else counted.sources, "minutes": minutes,
                "new_logins": new_logins, "notes": read.notes, "skipped": read.skipped_bytes}

    # -- GPU processes -----------------------------------------------------------------
    def _gpu_processes(self, proc_root: str, result: SensorResult):
        mode = self.values["gpu_processes"]
        if mode == "off":
            return None
        if mode == "auto" and not procinfo.nvidia_driver_loaded(proc_root):
            result.note("No NVIDIA driver loaded: GPU processes not checked")
            return None
        from prtg_ai.backends import nvml

        try:
            with nvml.Nvml() as lib:
                pids, silent, denied = lib.running_pids()
        except SensorError as exc:
            result.note(f"GPU processes not checked: {exc.message()}")
            return None
        if denied:
            result.warning = True
            result.note("NVML refused the GPU process list (NoPermission): run as root, or share the host PID "
                        "namespace in a container")
        if silent:
            result.note("No process list from " + ", ".join(silent[:4]))
        return {pid: (index, listeners.describe(proc_root, pid))
                for index, plist in sorted(pids.items()) for pid in plist}

    def _judge_gpu(self, gpu, allow: list[str], data: dict, learning: bool):
        if gpu is None:
            return None
        learnt = [n for n in data.get("gpu_names", []) if isinstance(n, str)][:MAX_NAMES]
        patterns = [*DEFAULT_GPU_ALLOW, *allow]
        suspicious = []
        for pid, (index, proc) in sorted(gpu.items()):
            why = miner_reason(proc)
            if why is None:
                names = proc.names
                if any(fnmatch.fnmatchcase(n, p) for n in names for p in patterns) or any(n in learnt for n in names):
                    continue
                if learning:
                    learnt.append(proc.label[:64])
                    continue
                why = "outside the allow-list"
            suspicious.append((index, proc, why))
        data["gpu_names"] = list(dict.fromkeys(learnt))[:MAX_NAMES]
        return {"count": len(gpu), "suspicious": suspicious}

    # -- channels ----------------------------------------------------------------------
    def _channels(self, result, findings, exposed, ports, new_ports, pids, proc_of, learning, since,
                  gpu_view, auth_view) -> None:
        add = lambda key, value, **kw: result.add(self.channel(key, value, **kw))  # noqa: E731
        summary: list[str] = []
        self._service_channels(result, add, summary, findings, exposed, ports, new_ports, pids, proc_of, learning)
        if auth_view is not None:
            self._auth_channels(result, add, summary, auth_view)
        if gpu_view is not None:
            self._gpu_channels(add, summary, gpu_view)
        if not summary:
            exposed_text = f"{len(ports)} exposed TCP port(s)" + (f" ({', '.join(map(str, ports[:12]))}"
                                                                   f"{' ...' if len(ports) > 12 else ''})" if ports else "")
            summary.append(f"No unauthenticated AI service; {exposed_text}")
        result.text = ". ".join(summary)

    def _service_channels(self, result, add, summary, findings, exposed, ports, new_ports, pids, proc_of,
                          learning) -> None:
        """Unauthenticated, exposed, new and protected services; what is wrong goes into ``summary``."""
        opened = findings["open"]
        add("unauth_services", len(opened))
        if opened:
            parts = [f"{s.name} on {sock.shown} ({_proc_label(proc)}): {s.why}" for s, sock, proc in opened[:MAX_OPEN_SHOWN]]
            more = f" and {len(opened) - MAX_OPEN_SHOWN} more" if len(opened) > MAX_OPEN_SHOWN else ""
            summary.append("UNAUTHENTICATED: " + "; ".join(parts) + more)
        add("exposed_ports", len(ports))
        add("new_ports", len(new_ports))
        if new_ports:
            owners = []
            for port in new_ports[:MAX_SHOWN]:
                socks = [s for s in exposed if s.port == port]
                proc = next((proc_of(pids.get(s.inode)) for s in socks if pids.get(s.inode) is not None), None)
                owners.append(f"{port} ({_proc_label(proc)})")
            summary.append("New listening port(s): " + ", ".join(owners)
                           + " (expected? add them to --accept-ports)")
        elif learning:
            result.note(f"Learning listening ports and GPU process names for {format_duration(self.values['learn'])} "
                        f"from the first scan")
        add("protected_services", len(findings["protected"]))

    @staticmethod
    def _auth_channels(result, add, summary, auth_view: dict) -> None:
        """SSH failures and new login sources, or a warning saying why they are left out."""
        if "problem" in auth_view:
            result.warning = True
            result.note(f"SSH channels omitted: {auth_view['problem']}")
            return
        minutes = auth_view["minutes"]
        rate = auth_view["failures"] / minutes if minutes else 0.0
        add("ssh_failures", round(rate, 3))
        add("ssh_failure_sources", len(auth_view["sources"]))
        add("new_login_sources", len(auth_view["new_logins"]))
        if auth_view["new_logins"]:
            shown = ", ".join(f"{lg.user}@{lg.address} ({lg.method})"
                              for lg in auth_view["new_logins"][:MAX_SHOWN])
            summary.append(f"Login(s) from new address(es): {shown}")
        if auth_view["first"]:
            result.note(f"SSH counting starts now ({auth_view['kind']}): rates from the next scan")
        elif auth_view["failures"]:
            result.note(f"{auth_view['failures']} failed SSH authentication(s) from "
                        f"{len(auth_view['sources'])} address(es) since the last scan")
        for n in auth_view["notes"]:
            result.note("Auth log: " + n)
        if auth_view["skipped"]:
            result.note(f"Auth log: {auth_view['skipped']} bytes skipped to stay within the per-scan cap")

    @staticmethod
    def _gpu_channels(add, summary, gpu_view: dict) -> None:
        """Suspicious and all GPU processes; the suspicious ones, with where they run, go into ``summary``."""
        suspicious = gpu_view["suspicious"]
        add("suspicious_gpu", len(suspicious))
        add("gpu_processes", gpu_view["count"])
        if suspicious:
            parts = []
            for index, proc, why in suspicious[:MAX_SHOWN]:
                where = ", ".join(x for x in (f"user {_safe(proc.user)}" if proc.user else "",
                                              f"container {proc.container}" if proc.container else "",
                                              f"pod {proc.pod}" if proc.pod else "") if x)
                parts.append(f"{_safe(proc.label)} PID {proc.pid} on GPU {index}" + (f" ({where})" if where else "")
                             + f": {why}")
            summary.append("Suspicious GPU process(es): " + "; ".join(parts))


def miner_reason(proc: listeners.ProcessInfo) -> str | None:
    """Why ``proc`` is a known miner (its name, or a stratum pool URL in its arguments), or None."""
    for name in proc.names:
        stem = name.lower().rsplit(".", 1)[0] if name.lower().endswith((".exe", ".bin")) else name.lower()
        if stem in MINERS:
            return f"known cryptocurrency miner ({_safe(name)})"
    joined = " ".join(proc.argv[:64]).lower()
    if any(m in joined for m in STRATUM_MARKERS):
        return "connects to a stratum mining pool"
    return None


def _safe(text: str | None) -> str:
    """A process or user name fit for the PRTG message (printable, short)."""
    if not text:
        return "?"
    return "".join(c if c.isalnum() or c in "._-:+@" else "?" for c in text)[:40]


def _proc_label(proc) -> str:
    if proc is None:
        return "process unknown: run as root to see it"
    extra = f", user {_safe(proc.user)}" if proc.user else ""
    if proc.container:
        extra += f", container {proc.container}"
    return f"{_safe(proc.label)} PID {proc.pid}{extra}"
