"""Attack 4: exhausting the agent's memory through xid_log=/dev/zero (the unit caps it at 256 MiB).

Real parts: the real /dev/zero character device, a real 40 MB sparse log file, the
real agent, NVML through the scenario fake, peak RSS from getrusage.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

from fakes import nvml_fake
from security.sec_support import attack, leak_check, ok, text_of

H100 = Path(__file__).resolve().parents[1] / "testcases" / "gpu_host" / "h100x8_load" / "nvml.json"
XID_LINE = "[ 99.1] NVRM: Xid (PCI:0000:18:00): 48, pid='<unknown>', name=<unknown>, An uncorrectable ECC error.\n"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def test_04_dev_zero_is_refused_without_reading(agent, monkeypatch, tmp_path):
    nvml_fake.install(monkeypatch, nvml_fake.load_scenario(H100))
    a = agent(allowed_paths=["/dev", str(tmp_path)])
    before = peak_rss_mib()
    for _ in range(5):
        attack()
        started = time.monotonic()
        doc, _ = a.sensor("gpu_host", {"xid_log": "/dev/zero"})
        assert ok(doc) and "neither a regular file nor the kernel log device" in text_of(doc)
        leak_check(time.monotonic() - started < 5, "reading /dev/zero took long")
    grown = peak_rss_mib() - before
    leak_check(grown < 64, f"peak RSS grew by {grown:.0f} MiB")


def test_04_huge_log_is_read_from_its_tail_within_the_cap(agent, monkeypatch, tmp_path):
    nvml_fake.install(monkeypatch, nvml_fake.load_scenario(H100))
    log = tmp_path / "kern.log"
    with open(log, "wb") as fh:
        fh.truncate(40 * 1024 * 1024)  # 40 MB of NULs (sparse), then the recent lines
        fh.seek(0, 2)
        fh.write(XID_LINE.encode())
    a = agent(allowed_paths=[str(tmp_path)])
    before = peak_rss_mib()
    attack()
    a.sensor("gpu_host", {"xid_log": str(log)})  # first scan: the baseline
    with open(log, "ab") as fh:
        fh.write(XID_LINE.replace("99.1", "99.2").encode())
    doc, _ = a.sensor("gpu_host", {"xid_log": str(log)})
    assert ok(doc), text_of(doc)
    channels = {c["channel"]: c["value"] for c in doc["prtg"]["result"]}
    assert any("XID" in name.upper() for name in channels), channels  # the legitimate read still finds XIDs
    grown = peak_rss_mib() - before
    leak_check(grown < 64, f"peak RSS grew by {grown:.0f} MiB for a 40 MB log (cap 4 MiB)")
