"""Attack 9: listing any folder (checkpoint_volume) and probing file existence (xid_log) through the agent.

Real parts: ``prtg-ai serve`` as a subprocess on a network listener (0.0.0.0), as
the shipped unit and DaemonSet run it, and real HTTP requests.
"""

from __future__ import annotations

import subprocess
import sys

import requests

from security.sec_support import TOKEN, attack, free_port, leak_check, wait_until
from support import cli_env, stop_with_sigterm


def serve(tmp_path, *extra: str):
    port = free_port()
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    env = cli_env(tmp_path / "state", {"PRTG_AI_LOG": "none"})
    proc = subprocess.Popen([sys.executable, "-m", "prtg_ai.cli", "serve", "--listen", f"0.0.0.0:{port}",
                             "--token-file", str(token_file), *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.get(base + "/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    assert wait_until(up, timeout=20), "agent did not start"
    return proc, base


def get(base: str, sensor: str, **params) -> str:
    answer = requests.get(f"{base}/sensors/{sensor}", params=params, headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=20)
    assert answer.status_code == 200
    return answer.json()["prtg"].get("text", "") if "error" in answer.json()["prtg"] else ""


def test_09_network_listener_serves_no_path_by_default(tmp_path):
    proc, base = serve(tmp_path)
    try:
        texts = set()
        for path in ("/etc", "/nonexistent-folder-14", "/root", "/etc/../etc"):
            attack()
            text = get(base, "checkpoint_volume", path=path, pattern="shadow*")
            leak_check("shadow" not in text and text != "", f"{path} was listed: {text!r}")
            texts.add(text)
        for path in ("/etc/shadow", "/nonexistent-file-14", "/dev/kmsg"):
            attack()
            texts.add(get(base, "gpu_host", xid_log=path))
        leak_check(len(texts) == 2, f"error texts tell existing from missing paths: {texts}")
    finally:
        stop_with_sigterm(proc)


def test_09_allow_path_serves_its_folder_only(tmp_path):
    ckpt = tmp_path / "ckpt"
    (ckpt / "checkpoint-1").mkdir(parents=True)
    proc, base = serve(tmp_path, "--allow-path", str(ckpt))
    try:
        assert get(base, "checkpoint_volume", path=str(ckpt)) == ""  # the legitimate poll: no error
        outside = {get(base, "checkpoint_volume", path=p) for p in ("/etc", "/nope-14", f"{ckpt}/../..")}
        attack(3)
        leak_check(len(outside) == 1 and "--allow-path" in outside.pop(), "outside paths were told apart")
    finally:
        stop_with_sigterm(proc)
