"""node_security against real listeners speaking like the AI stack (loopback; no root needed).

The servers are real HTTP / Redis-protocol / SSH-banner servers on 127.0.0.1 (port 0)
answering with the services' real answers (``tests/testcases/node_security/services``).
The sensor reads its listening sockets from a proc tree this test writes in the
kernel's format, where those servers appear bound to 0.0.0.0 (exposed): the sensor
then probes them through loopback, as it does for any wildcard-bound listener.
The real ``/proc/net/tcp`` is read in ``test_real_procfs_listener_is_found``.
"""

from __future__ import annotations

import os
import socket
import sys

from fakes.ai_services import ANSWERS, Services

from prtg_ai.backends import listeners

HTTP_SERVICES = sorted(ANSWERS)  # the ten HTTP services
HEADER = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n")


def _hex4(address: str) -> str:
    # The kernel prints the 32-bit address in host byte order (little-endian here).
    return socket.inet_aton(address)[::-1].hex().upper() if sys.byteorder == "little" else socket.inet_aton(address).hex().upper()


def write_proc(root, rows, pid=4242, comm="python3", argv=("python3", "serve.py"), state="0A"):
    """A proc tree whose net/tcp lists ``rows`` = [(address, port, inode)] owned by ``pid``."""
    (root / "net").mkdir(parents=True, exist_ok=True)
    lines = [HEADER]
    for sl, (address, port, inode) in enumerate(rows):
        lines.append(f"{sl:4d}: {_hex4(address)}:{port:04X} 00000000:0000 {state} 00000000:00000000 00:00000000 "
                     f"00000000  1000        0 {inode} 1 0000000000000000 100 0 0 10 0\n")
    (root / "net" / "tcp").write_text("".join(lines))
    (root / "net" / "tcp6").write_text(HEADER)
    proc = root / str(pid)
    (proc / "fd").mkdir(parents=True, exist_ok=True)
    for n, (_, _, inode) in enumerate(rows):
        os.symlink(f"socket:[{inode}]", proc / "fd" / str(10 + n))
    (proc / "comm").write_text(comm + "\n")
    (proc / "cmdline").write_bytes("\0".join(argv).encode() + b"\0")
    (proc / "status").write_text("Name:\tpython3\nUid:\t1000\t1000\t1000\t1000\n")
    (proc / "cgroup").write_text("0::/user.slice/user-1000.slice/session-3.scope\n")
    return root


ARGS = ["--auth-source", "off", "--gpu-processes", "off"]


def scan(sensor_run, make_ctx, proc_root, *extra):
    result = sensor_run("node_security", [*ARGS, *extra], make_ctx(proc_root=proc_root))
    assert not result.error, result.message()
    return {c.name: c.value for c in result.channels}, result.message()


def test_every_service_open_is_flagged_and_named(tmp_path, sensor_run, make_ctx):
    specs = [(s, "open", "127.0.0.1", 0) for s in HTTP_SERVICES] + [("redis", "open", "127.0.0.1", 0)]
    with Services(specs) as running:
        rows = [("0.0.0.0", b["port"], 9000 + i) for i, b in enumerate(running.bound)]
        values, text = scan(sensor_run, make_ctx, write_proc(tmp_path / "proc", rows))
        sent = list(running.requests)
    # Expected by hand: ten HTTP services and Redis answered without credentials.
    assert values["Unauthenticated AI Services"] == 11
    assert values["Exposed Listening Ports"] == 11
    assert values["Listeners Requiring Auth"] == 0
    for name in ("Jupyter", "Ray dashboard", "MLflow", "TensorBoard", "Gradio", "Ollama",
                 "OpenAI-compatible", "Triton", "Docker API", "kubelet", "Redis"):
        assert name in text, name
    ray_port = next(b["port"] for b in running.bound if b["service"] == "ray")
    assert f"Ray dashboard / jobs API on 0.0.0.0:{ray_port} (python3 PID 4242, user " in text
    assert "CVE-2023-48022" in text
    # The probes were read-only GETs without credentials or cookies.
    assert sent and all("Authorization" not in h and "Cookie" not in h for _, h in sent)
    # Nothing of the answers is echoed (a kubelet pod list carries env values).
    assert "redacted-in-capture" not in text and "gemma3" not in text and "llama-ft" not in text


def test_the_same_services_requiring_auth_are_not_flagged(tmp_path, sensor_run, make_ctx):
    specs = [(s, "auth", "127.0.0.1", 0) for s in HTTP_SERVICES] + [("redis", "auth", "127.0.0.1", 0)]
    with Services(specs) as running:
        rows = [("0.0.0.0", b["port"], 9100 + i) for i, b in enumerate(running.bound)]
        values, text = scan(sensor_run, make_ctx, write_proc(tmp_path / "proc", rows, comm="redis-server"))
    assert values["Unauthenticated AI Services"] == 0, text
    # 401/403 from nine HTTP services and Redis' NOAUTH; Docker behind TLS answers 400 (no verdict).
    assert values["Listeners Requiring Auth"] == 10
    assert values["Exposed Listening Ports"] == 11


def test_decoys_are_not_misidentified(tmp_path, sensor_run, make_ctx):
    # A JSON API, a web page and an SSH server whose process names suggest Jupyter, Redis and vLLM;
    # and a real Redis protocol behind a process that looks like Jupyter.
    specs = [("decoy", "json", "127.0.0.1", 0), ("decoy", "html", "127.0.0.1", 0),
             ("decoy", "ssh", "127.0.0.1", 0), ("redis", "open", "127.0.0.1", 0)]
    with Services(specs) as running:
        found = {}
        for i, (b, comm) in enumerate(zip(running.bound, ("jupyter-lab", "redis-server", "vllm", "jupyter-lab"))):
            root = write_proc(tmp_path / f"proc{i}", [("0.0.0.0", b["port"], 9200 + i)], comm=comm, argv=(comm,))
            found[b["service"] + "-" + b["mode"]] = scan(sensor_run, make_ctx, root)
    for decoy in ("decoy-json", "decoy-html", "decoy-ssh"):
        values, text = found[decoy]
        assert values["Unauthenticated AI Services"] == 0, (decoy, text)
        assert values["Listeners Requiring Auth"] == 0
    values, text = found["redis-open"]
    assert values["Unauthenticated AI Services"] == 1
    assert "Redis without a password" in text and "Jupyter" not in text


def test_loopback_listener_is_not_exposed_nor_probed(tmp_path, sensor_run, make_ctx):
    with Services([("jupyter", "open", "127.0.0.1", 0)]) as running:
        rows = [("127.0.0.1", running.bound[0]["port"], 9300)]
        values, text = scan(sensor_run, make_ctx, write_proc(tmp_path / "proc", rows))
        assert running.requests == []
    assert values["Unauthenticated AI Services"] == 0 and values["Exposed Listening Ports"] == 0


def test_new_listening_ports_after_learning_and_accept_path(tmp_path, sensor_run, make_ctx, clock):
    with Services([("decoy", "html", "127.0.0.1", 0), ("decoy", "html", "127.0.0.1", 0)]) as running:
        a, b = (x["port"] for x in running.bound)
        root = write_proc(tmp_path / "proc", [("0.0.0.0", a, 9400)])
        values, text = scan(sensor_run, make_ctx, root, "--learn", "1h")
        assert values["New Listening Ports"] == 0 and "Learning" in text
        clock.advance(7200)
        root2 = write_proc(tmp_path / "proc2", [("0.0.0.0", a, 9400), ("0.0.0.0", b, 9401)])
        values, text = scan(sensor_run, make_ctx, root2, "--learn", "1h")
        assert values["New Listening Ports"] == 1 and values["Exposed Listening Ports"] == 2
        assert f"New listening port(s): {b} (python3 PID 4242" in text and "--accept-ports" in text
        clock.advance(60)
        values, _ = scan(sensor_run, make_ctx, root2, "--learn", "1h", "--accept-ports", f"22,{b}")
        assert values["New Listening Ports"] == 0


def test_probe_off_sends_nothing(tmp_path, sensor_run, make_ctx):
    with Services([("jupyter", "open", "127.0.0.1", 0)]) as running:
        root = write_proc(tmp_path / "proc", [("0.0.0.0", running.bound[0]["port"], 9500)])
        values, text = scan(sensor_run, make_ctx, root, "--probe=no")
        assert running.requests == []
    assert values["Unauthenticated AI Services"] == 0 and "--probe no" in text


def test_real_procfs_listener_is_found():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        socks, problems = listeners.listening("/proc")
        mine = [x for x in socks if x.port == port and x.address == "127.0.0.1"]
        assert problems == [] and len(mine) == 1 and mine[0].loopback
        owners = listeners.owners("/proc", {mine[0].inode})
        assert owners == {mine[0].inode: os.getpid()}
