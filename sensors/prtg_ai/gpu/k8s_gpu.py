"""``k8s_gpu``: a Kubernetes GPU node's allocation against its use, and the GPU queue of the cluster.

Reads, from the API server through ``prtg_ai.backends.k8s`` (two GET shapes, paged):

* the node (``GET /api/v1/nodes/{name}``): allocatable ``nvidia.com/gpu`` and
  ``nvidia.com/mig-*`` devices;
* the node's Running pods (``fieldSelector=spec.nodeName=NODE,status.phase=Running``):
  what they request, with the scheduler's init-container and sidecar rules
  (``k8s_model``);
* the Pending pods not bound to any node (``status.phase=Pending,spec.nodeName=``),
  cluster-wide or in ``--namespace``: GPU pods waiting for the scheduler.

and, to find GPUs that are allocated but idle, per-GPU utilisation from dcgm-exporter
(``--source dcgm --dcgm-url``: its pod labels say which pod holds which GPU or MIG
instance) or from NVML on this node (``--source nvml``: GPU processes are tied to pods
through their cgroups, ``backends.k8s_pods``; needs the host PID namespace). Each
allocated GPU's idle stretch is judged by ``gpu.evaluate.idle_devices`` (the rule the
GPU sensors' idle-but-held uses) and kept in the state folder.

Needs: RBAC ``get`` on ``nodes`` and ``list`` on ``pods`` (installer/assets/kubernetes/
prtg-ai-rbac.yaml); in a pod the service-account token and CA are found by default.
A 401 or 403 becomes an error naming the missing token or rule.
"""

from __future__ import annotations

from prtg_ai.gpu import k8s_model as km
from prtg_ai.backends import k8s
from prtg_ai.core.errors import ConfigError, SensorError
from prtg_ai.core.params import Param, format_duration
from prtg_ai.core.sensor import Sensor
from prtg_ai.core.state import StateStore
from prtg_ai.prtg.model import SensorResult

DCGM_TIMEOUT = 10.0
MAX_NAMED = 6  # pods named in one message


class K8sGpuSensor(Sensor):
    id = "k8s_gpu"
    title = "Kubernetes GPU node"
    summary = ("GPUs allocatable vs requested on a Kubernetes node, allocated-but-idle GPUs with their pods, "
               "and GPU pods the scheduler cannot place yet.")
    interval = 60
    params = (
        Param("node", "str", "the node to watch (default: NODE_NAME as the DaemonSet sets it, else this host's name)",
              env=("NODE_NAME",), state_key=True, metavar="NAME"),
        Param("api_url", "str", "API server URL (default in a pod: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT)",
              state_key=True, metavar="URL"),
        Param("token_file", "path", "bearer token file (default in a pod: the service-account token)", metavar="FILE"),
        Param("ca_file", "path", "CA bundle of the API server (default in a pod: the service account's ca.crt)",
              metavar="FILE"),
        Param("namespace", "str", "count pending GPU pods in this namespace only (default: the whole cluster)",
              state_key=True, metavar="NAME"),
        Param("source", "choice", "utilisation for allocated-but-idle: none, nvml (this node) or dcgm (dcgm-exporter); "
              "default dcgm with --dcgm-url, else none", choices=("none", "nvml", "dcgm"), metavar="SOURCE"),
        Param("dcgm_url", "str", "dcgm-exporter's metrics page of this node, e.g. http://NODE:9400/metrics",
              state_key=True, metavar="URL"),
        Param("idle_util", "float", "utilisation (%) at or below which an allocated GPU counts as idle",
              default=5.0, minimum=0.0, maximum=100.0, metavar="PERCENT"),
        Param("idle_window", "duration", "how long an allocated GPU must stay idle to count",
              default=1800.0, minimum=60.0, maximum=7 * 86400.0, metavar="DURATION"),
        Param("timeout", "duration", "time allowed for the API server's answers", default=10.0, minimum=1.0,
              maximum=40.0, metavar="DURATION"),
    )

    def run(self) -> SensorResult:
        node_name = self._node_name()
        cfg = self._api_config()
        with k8s.Api(cfg, self.ctx.monotonic, self.ctx.policy) as api:
            node = api.node(node_name)
            running = api.pods(f"spec.nodeName={node_name},status.phase=Running")
            pending = api.pods("status.phase=Pending,spec.nodeName=", self.values["namespace"])
        allocatable = km.node_gpu_resources(node)
        capacity = km.node_gpu_resources(node, "capacity")
        if not any(allocatable.values()) and not any(capacity.values()):
            raise SensorError(f"Node {node_name} offers no nvidia.com/gpu or nvidia.com/mig-* resources.",
                              "Is it a GPU node, and does the NVIDIA device plugin (GPU Operator) run on it? "
                              f"Check: kubectl describe node {node_name} | grep nvidia.com")
        result = SensorResult()
        now = self.ctx.now()
        gpu_pods = [(p, km.pod_gpu_requests(p)) for p in running]
        gpu_pods = [(p, r) for p, r in gpu_pods if r]
        waiting = [(p, km.pod_gpu_requests(p)) for p in pending]
        waiting = [(p, r) for p, r in waiting if r]
        self._allocation(result, node_name, allocatable, capacity, gpu_pods)
        self._idle(result, gpu_pods, now)
        self._pending(result, waiting, now)
        return result

    # -- parameters --------------------------------------------------------------------
    def _node_name(self) -> str:
        name = (self.values["node"] or "").strip()
        if not name:
            name = k8s.local_node_name()
        if not name or len(name) > 253 or any(c in name for c in "/?#% \t"):
            raise ConfigError("node", f"{name[:60]!r} is not a Kubernetes node name")
        return name

    def _api_config(self) -> k8s.ApiConfig:
        env = self.ctx.env
        api_url = self.values["api_url"]
        token_file = self.values["token_file"]
        in_cluster = k8s.in_cluster_url(env)
        if api_url and api_url.rstrip("/") != in_cluster and token_file is None:
            # The pod's own service-account token goes only to the pod's own API server.
            raise ConfigError("token_file", "with --api-url other than the in-cluster API server, give the token "
                                            "for that server with --token-file")
        if api_url and self.ctx.policy is not None:
            k8s.check_destination(api_url, self.ctx.policy, self.values["timeout"])
        return k8s.config(api_url, str(token_file) if token_file else None,
                          str(self.values["ca_file"]) if self.values["ca_file"] else None, env,
                          timeout=self.values["timeout"])

    # -- allocation --------------------------------------------------------------------
    def _allocation(self, result, node_name, allocatable, capacity, gpu_pods) -> None:
        add = lambda key, value, **kw: result.add(self.channel(key, value, **kw))  # noqa: E731
        alloc_gpu, alloc_mig = km.split(allocatable)
        cap_gpu, cap_mig = km.split(capacity)
        req_gpu = req_mig = 0.0
        for _, req in gpu_pods:
            g, m = km.split(req)
            req_gpu += g
            req_mig += m
        total_alloc, total_req = alloc_gpu + alloc_mig, req_gpu + req_mig
        if total_alloc > 0:
            add("allocated_percent", round(100.0 * total_req / total_alloc, 2))
        add("gpus_allocatable", km.as_int(alloc_gpu))
        add("gpus_requested", km.as_int(req_gpu))
        add("gpus_unallocated", km.as_int(max(alloc_gpu - req_gpu, 0.0)))
        if alloc_mig or cap_mig or req_mig:
            add("mig_allocatable", km.as_int(alloc_mig))
            add("mig_requested", km.as_int(req_mig))
            profiles = sorted(k[len(km.MIG_PREFIX):] + f" x{km.as_int(v)}" for k, v in allocatable.items()
                              if k.startswith(km.MIG_PREFIX) and v)
            if profiles:
                result.note("MIG devices: " + ", ".join(profiles))
        add("gpu_pods", len(gpu_pods))
        if cap_gpu + cap_mig > total_alloc:
            result.warning = True
            result.note(f"{km.as_int(cap_gpu + cap_mig - total_alloc)} GPU device(s) in the node's capacity are not "
                        "allocatable: the device plugin reports them unhealthy (check XIDs and the plugin's log)")
        result.text = (f"Node {node_name}: {km.as_int(total_req)} of {km.as_int(total_alloc)} GPU device(s) allocated"
                       f" to {len(gpu_pods)} pod(s)")

    # -- allocated but idle -------------------------------------------------------------
    def _source(self) -> str:
        source = self.values["source"]
        if source is None:
            return "dcgm" if self.values["dcgm_url"] else "none"
        return source

    def _idle(self, result, gpu_pods, now: float) -> None:
        devices = self._devices(result, gpu_pods)
        if devices is None:
            return
        from prtg_ai.gpu.evaluate import idle_devices, policy_of

        policy = policy_of(self.values)
        with StateStore(self.ctx.state_dir).session(self.id, self.state_identity(), max_samples=1) as state:
            before = state.data.get("idle") if isinstance(state.data.get("idle"), dict) else {}
            idle, kept = idle_devices(devices, before, state.data.get("t"), now, policy)
            state.data.update(idle=kept, t=now)
            for note in state.notes:
                result.note(note)
        result.add(self.channel("idle_allocated", len(idle)))
        if idle:
            shown = "; ".join(f"{label} ({', '.join(pods[:3])}) for {format_duration(round(held))}"
                              for label, pods, held in idle[:MAX_NAMED])
            more = f" and {len(idle) - MAX_NAMED} more" if len(idle) > MAX_NAMED else ""
            result.note(f"Allocated but idle (<= {policy.idle_util:g} %): {shown}{more}")

    def _devices(self, result, gpu_pods):
        """(key, label, utilisation %, [pods]) per allocatable device, or None (noted) without a source."""
        source = self._source()
        if source == "none":
            result.note("Allocated but Idle GPUs needs utilisation: add --source dcgm --dcgm-url "
                        "http://NODE:9400/metrics (or --source nvml on the node)")
            return None
        self._notes: list[str] = []
        try:
            devices = self._devices_dcgm() if source == "dcgm" else self._devices_nvml(gpu_pods)
        except SensorError as exc:
            # The scheduler's numbers stand on their own: a missing utilisation source is a warning.
            result.warning = True
            result.note(f"Allocated but Idle GPUs unavailable: {exc.message()}")
            return None
        for note in self._notes:
            result.note(note)
        running = {km.pod_name(p) for p, _ in gpu_pods}
        strangers = sorted({pod for *_, pods in devices for pod in pods} - running)
        if strangers:
            # A GPU held by a pod the API does not place on this node: the exporter is another node's.
            result.warning = True
            result.note(f"The utilisation source names pod(s) not running on this node with GPUs "
                        f"({', '.join(strangers[:3])}): is --dcgm-url this node's dcgm-exporter?")
        return devices

    def _devices_dcgm(self):
        """(key, label, utilisation %, [pods]) per GPU and MIG instance, from dcgm-exporter."""
        from prtg_ai.backends import dcgm

        url = dcgm.check_url(self.values["dcgm_url"])
        page = dcgm.parse(dcgm.fetch(url, DCGM_TIMEOUT, self.ctx.monotonic, self.ctx.policy), url)
        out = []
        for g in page.gpus:
            s = g.sample
            if s.mig_enabled:
                for gi in sorted(set(g.instance_pods) | set(g.instance_util) | set(g.profiles)):
                    util = g.instance_util.get(gi)
                    pod = g.instance_pods.get(gi)
                    out.append((f"{s.uuid}/{gi}", f"GPU {s.index} GI{gi}", util, [pod] if pod else []))
            else:
                out.append((s.uuid, f"GPU {s.index}", s.util_gpu, list(g.pods)))
        if not any(pods for *_, pods in out):
            self._notes.append("dcgm-exporter puts no pod labels on its rows: enable its Kubernetes mapping "
                               "(the GPU Operator does; standalone: mount the kubelet's pod-resources socket)")
        return out

    def _devices_nvml(self, gpu_pods):
        """(key, label, utilisation %, [pods]) per GPU of this node, pods from the processes' cgroups."""
        from prtg_ai.backends.k8s_pods import pod_uid
        from prtg_ai.gpu.sources import acquire_all

        acq = acquire_all(self)
        by_uid = {(p.get("metadata") or {}).get("uid"): km.pod_name(p) for p, _ in gpu_pods}
        out = []
        for s in acq.samples:
            if s.mig_enabled:
                continue  # NVML has no utilisation under MIG
            pods = sorted({by_uid.get(pod_uid(self.ctx.proc_path, p.pid)) for p in (s.processes or [])} - {None})
            out.append((s.uuid, f"GPU {s.index}", s.util_gpu, pods))
        requested = sum(km.split(r)[0] for _, r in gpu_pods)
        attributed = sum(1 for *_, pods in out if pods)
        if requested > attributed:
            self._notes.append(f"{km.as_int(requested - attributed)} requested GPU(s) show no process of a pod: "
                               "idle ones with no process at all need --source dcgm; in a container the agent "
                               "needs hostPID to see other pods' processes")
        return out

    # -- the queue ---------------------------------------------------------------------
    def _pending(self, result, waiting, now: float) -> None:
        add = lambda key, value: result.add(self.channel(key, value))  # noqa: E731
        add("pending_pods", len(waiting))
        ages = [(now - t, p) for p, _ in waiting if (t := km.created(p)) is not None]
        scope = f"in namespace {self.values['namespace']}" if self.values["namespace"] else "in the cluster"
        if ages:
            age, oldest = max(ages, key=lambda a: a[0])
            add("oldest_pending", max(int(age), 0))
            why = km.unschedulable_reason(oldest)
            result.note(f"{len(waiting)} GPU pod(s) pending {scope}; oldest {km.pod_name(oldest)} for "
                        f"{format_duration(max(int(age), 0))}" + (f": {why}" if why else ""))
        elif not waiting:
            add("oldest_pending", 0)
