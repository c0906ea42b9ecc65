"""Which Kubernetes pod a GPU process belongs to: ``/proc/<pid>/cgroup`` -> pod UID -> namespace/pod.

Reads: ``<proc root>/<pid>/cgroup`` (the proc root is injected: ``PRTG_AI_PROC_ROOT``
or ``/proc``; the agent needs the host PID namespace to see other containers' PIDs),
and, when it runs in a pod with a service-account token, the pods of its node
through ``backends.k8s`` (RBAC: ``list`` on ``pods``). Names are cached in the state
folder, so one API call serves many scans.

The kubelet names a pod's cgroup after its UID, whatever the driver and version:

* cgroup v2 or v1, systemd driver: ``.../kubepods.slice/kubepods-burstable.slice/
  kubepods-burstable-pod<uid with _ for ->.slice/cri-containerd-<id>.scope``;
* cgroupfs driver: ``/kubepods/besteffort/pod<uid>/<container id>`` (Guaranteed pods
  sit directly under ``/kubepods/pod<uid>``).

Without an API (no token, API unreachable, RBAC missing) a process is named by its
pod UID, which ``kubectl get pods -A -o custom-columns=UID:.metadata.uid,NAME:.metadata.name``
resolves by hand.
"""

from __future__ import annotations

from prtg_ai.backends import procinfo

CACHE_TTL = 600.0      # a pod's name never changes; the TTL only bounds the cache
NEGATIVE_TTL = 60.0    # an unknown UID (pod just started, API down) is asked again after this
MAX_CACHE = 2048
API_TIMEOUT = 3.0      # a message detail must not eat the scan's time budget


def pod_uid(proc_root, pid: int) -> str | None:
    """The UID of the pod whose cgroup holds ``pid`` (None: not in a pod, or gone)."""
    text = procinfo.cgroup_of(proc_root, pid)
    return procinfo.pod_uid_in(text) if text else None


def names_from_pods(pods: list[dict]) -> dict[str, str]:
    """``{uid: "namespace/name"}`` from pod objects of the API."""
    out = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        uid, name = meta.get("uid"), meta.get("name")
        if isinstance(uid, str) and isinstance(name, str):
            out[uid] = f"{meta.get('namespace') or 'default'}/{name}"
    return out


def resolve(ctx, uids: set[str]) -> dict[str, str]:
    """``{uid: "namespace/pod"}`` for the UIDs the API (or the cache) knows; never raises."""
    if not uids:
        return {}
    from prtg_ai.core.state import StateStore

    now = ctx.now()
    node = ctx.env.get("NODE_NAME") or ""
    try:
        store = StateStore(ctx.state_dir)
        with store.session("k8s_pod_names", {"node": node}, max_samples=1) as state:
            cache = state.data.get("names") if isinstance(state.data.get("names"), dict) else {}
            cache = {k: v for k, v in cache.items()
                     if isinstance(v, list) and len(v) == 2 and now - float(v[1]) < (CACHE_TTL if v[0] else NEGATIVE_TTL)}
            wanted = {u for u in uids if u not in cache}
            if wanted:
                found = _ask_api(ctx, node)
                for uid in wanted:
                    cache[uid] = [found.get(uid, ""), now]
                for uid, name in found.items():
                    if uid not in cache or not cache[uid][0]:
                        cache[uid] = [name, now]
            if len(cache) > MAX_CACHE:
                cache = dict(sorted(cache.items(), key=lambda kv: kv[1][1])[-MAX_CACHE:])
            state.data["names"] = cache
            return {u: cache[u][0] for u in uids if u in cache and cache[u][0]}
    except Exception:  # a name in a message is a courtesy: it never fails a scan
        return {}


def _ask_api(ctx, node: str) -> dict[str, str]:
    from prtg_ai.backends import k8s

    env = ctx.env
    if not k8s.in_cluster_url(env):
        return {}  # only the pod's own API server gets the pod's own token
    try:
        cfg = k8s.config(None, None, None, env, timeout=API_TIMEOUT)
        selector = f"spec.nodeName={node}" if node else ""
        with k8s.Api(cfg, ctx.monotonic) as api:
            return names_from_pods(api.pods(selector))
    except Exception:
        return {}


def describe_pids(ctx, pids: list[int]) -> dict[int, str]:
    """``{pid: "namespace/pod"}`` (or ``"pod <uid>"`` when the API cannot name it) for PIDs in pods.

    The small entry point the GPU sensors call for their messages (idle-but-held, top
    VRAM holders); PIDs outside any pod are left out.
    """
    uids = {}
    for pid in pids:
        uid = pod_uid(ctx.proc_path, pid)
        if uid:
            uids[pid] = uid
    if not uids:
        return {}
    names = resolve(ctx, set(uids.values()))
    return {pid: names.get(uid) or f"pod {uid}" for pid, uid in uids.items()}
