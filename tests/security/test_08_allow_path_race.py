"""Attack 8: swapping a symlink between the agent's --allow-path check and the sensor's open.

Real parts: a folder inside --allow-path whose entry a thread keeps swapping
between a symlink to an allowed checkpoint folder and a symlink to a folder
outside (seven secret checkpoints), while the real agent answers real polls.
"""

from __future__ import annotations

import os
import threading

from security.sec_support import attack, leak_check, ok, text_of

REQUESTS = 300


def test_08_symlink_swaps_never_reach_outside(agent, tmp_path):
    allowed = tmp_path / "allowed"
    real = allowed / "real"
    for i in range(2):
        (real / f"checkpoint-{i}").mkdir(parents=True)
    secret = tmp_path / "secret"
    for i in range(7):
        (secret / f"checkpoint-{i}").mkdir(parents=True)
    link = allowed / "link"
    os.symlink(real, link)
    a = agent(allowed_paths=[str(allowed)])
    stop = threading.Event()

    def swapper() -> None:
        spare = allowed / ".swap"
        flip = False
        while not stop.is_set():
            target = secret if flip else real
            try:
                os.symlink(target, spare)
                os.replace(spare, link)  # atomic swap, as an attacker with write access to 'allowed' can
            except OSError:
                pass
            flip = not flip

    t = threading.Thread(target=swapper, daemon=True)
    t.start()
    counts = []
    try:
        for _ in range(REQUESTS):
            attack()
            doc, raw = a.sensor("checkpoint_volume", {"path": str(link), "pattern": "checkpoint-*"})
            values = {c["channel"]: c["value"] for c in doc["prtg"].get("result", [])}
            counts.append(values.get("Checkpoints"))
            leak_check(values.get("Checkpoints") != 7, "the listing of a folder outside --allow-path was served")
            leak_check(str(secret) not in raw, "the outside path was named")
    finally:
        stop.set()
        t.join(5)
    served = sum(1 for c in counts if c == 2)
    print(f"\n{REQUESTS} polls during swaps: {served} served the allowed folder, "
          f"{counts.count(None)} refused, {sum(1 for c in counts if c == 7)} leaked")
    assert served > 0  # the race really ran both ways, and the allowed answers still came
    doc, _ = a.sensor("checkpoint_volume", {"path": str(real)})
    assert ok(doc), text_of(doc)
