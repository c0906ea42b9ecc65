"""Attack 12: creating state files without bound (one per distinct client-chosen identity).

Real parts: real instance files in a real state folder, created through the agent
(distinct ``path`` values under --allow-path) and through the state store, aged
with real mtimes.
"""

from __future__ import annotations

import os
import time

from prtg_ai.core import state as state_mod
from prtg_ai.core.state import StateStore
from security.sec_support import attack, leak_check, ok


def json_files(folder) -> list:
    return [p for p in folder.rglob("*.json")]


def test_12_instance_files_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(state_mod, "MAX_STATE_FILES", 50)  # the shipped 1000, scaled down to keep it fast
    folder = tmp_path / "state"
    store = StateStore(folder)
    for i in range(400):
        attack()
        with store.session("inference", {"url": f"http://127.0.0.1:{1000 + i}"}) as st:
            st.append([i, i])
    files = json_files(folder)
    locks = list(folder.rglob("*.lock"))
    print(f"\n400 distinct instances: {len(files)} state files, {len(locks)} lock files kept")
    leak_check(len(files) <= 50, f"{len(files)} state files for a cap of 50")
    leak_check(len(locks) <= 51, f"{len(locks)} lock files left behind")
    # The newest instances survive: a sensor that is still polled keeps its history.
    with store.session("inference", {"url": "http://127.0.0.1:1399"}) as st:
        assert st.samples == [[399, 399]]


def test_12_unused_files_expire(tmp_path):
    folder = tmp_path / "state"
    store = StateStore(folder)
    for i in range(20):
        with store.session("inference", {"url": f"http://old:{i}"}) as st:
            st.append([i, i])
    month_ago = time.time() - 31 * 86400
    for p in json_files(folder):
        os.utime(p, (month_ago, month_ago))
    attack()
    with store.session("inference", {"url": "http://new:1"}) as st:  # a new instance triggers the sweep
        st.append([1, 1])
    leak_check(len(json_files(folder)) == 1, f"{len(json_files(folder))} files; the expired ones stayed")


def test_12_through_the_agent(agent, tmp_path, monkeypatch):
    monkeypatch.setattr(state_mod, "MAX_STATE_FILES", 30)
    root = tmp_path / "data"
    for i in range(80):
        (root / f"d{i}" / "checkpoint-1").mkdir(parents=True)
    a = agent(allowed_paths=[str(root)])
    for i in range(80):
        attack()
        doc, _ = a.sensor("checkpoint_volume", {"path": str(root / f"d{i}")})
        assert ok(doc)
    files = json_files(tmp_path / "agent-state")
    leak_check(len(files) <= 30, f"{len(files)} state files through the agent for a cap of 30")
