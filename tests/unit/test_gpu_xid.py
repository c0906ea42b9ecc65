"""XID events from the kernel log: parser, cursor and reader."""

import os

from prtg_ai.backends import xid

KMSG = (
    "6,1090,412330000,-;nvidia-uvm: Loaded the UVM driver, major device number 508.\n"
    "4,1093,412339201,-;NVRM: Xid (PCI:0000:18:00): 63, pid='<unknown>', name=<unknown>, Row Remapper: New row marked\n"
    " SUBSYSTEM=pci\n"
    "3,1094,412339305,-;NVRM: Xid (PCI:0000:ab:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.\n"
)
DMESG = "[612345.120113] NVRM: Xid (PCI:0000:07:00): 94, pid=22131, name=python, Contained: SM (0x1).\n"
JOURNAL = "May 04 10:12:01 node7 kernel: NVRM: Xid (PCI:0000:07:00): 13, Graphics Exception: ESR 0x404600\n"


def test_parse_kmsg_records():
    events = xid.parse(KMSG)
    assert [(e.pci, e.code, e.order, e.order_kind) for e in events] == [
        ("0000:18:00", 63, 1093.0, "seq"), ("0000:ab:00", 79, 1094.0, "seq")]
    assert events[1].detail.endswith("GPU has fallen off the bus.")


def test_parse_dmesg_and_journal_lines():
    (d,) = xid.parse(DMESG)
    assert (d.pci, d.code, d.order, d.order_kind) == ("0000:07:00", 94, 612345.120113, "ts")
    (j,) = xid.parse(JOURNAL)
    assert (j.pci, j.code, j.order_kind) == ("0000:07:00", 13, "line")


def test_normalise_pci_matches_nvml_and_nvrm_forms():
    assert xid.normalise_pci("00000000:AB:00.0") == xid.normalise_pci("PCI:0000:ab:00") == "0000:ab:00"
    assert xid.normalise_pci("0001:3b:00.0") == "0001:3b:00"


def test_first_scan_is_a_baseline_then_only_new_events_count():
    events = xid.parse(KMSG)
    fresh, cursor = xid.since(events, None, "boot-a")
    assert fresh is None and cursor == {"boot": "boot-a", "order": 1094.0, "kind": "seq"}
    more = xid.parse(KMSG + "4,1100,412400000,-;NVRM: Xid (PCI:0000:18:00): 94, pid=1, name=x, Contained\n")
    fresh, cursor = xid.since(more, cursor, "boot-a")
    assert [e.code for e in fresh] == [94] and cursor["order"] == 1100.0
    fresh, cursor2 = xid.since(more, cursor, "boot-a")
    assert fresh == [] and cursor2 == cursor


def test_a_new_boot_makes_every_event_new():
    events = xid.parse(KMSG)
    fresh, _ = xid.since(events, {"boot": "boot-a", "order": 5000.0, "kind": "seq"}, "boot-b")
    assert [e.code for e in fresh] == [63, 79]


def test_a_log_that_went_backwards_counts_as_restarted():
    events = xid.parse(KMSG)
    fresh, _ = xid.since(events, {"boot": None, "order": 9999.0, "kind": "seq"}, None)
    assert [e.code for e in fresh] == [63, 79]


def test_no_events_keep_the_cursor():
    fresh, cursor = xid.since([], {"boot": "b", "order": 10.0, "kind": "seq"}, "b")
    assert fresh == [] and cursor == {"boot": "b", "order": 10.0, "kind": "seq"}


def test_read_log_from_a_file_missing_file_and_boot_id(tmp_path):
    log = tmp_path / "dmesg.txt"
    log.write_text(DMESG)
    read = xid.read_log(log)
    assert read.problem is None and "Xid" in read.text
    gone = xid.read_log(tmp_path / "nope")
    assert gone.text is None and "does not exist" in gone.problem
    (tmp_path / "sys/kernel/random").mkdir(parents=True)
    (tmp_path / "sys/kernel/random/boot_id").write_text("1f2e3d\n")
    assert xid.boot_id(tmp_path) == "1f2e3d"
    assert xid.boot_id(tmp_path / "none") is None


def test_read_log_without_permission(tmp_path):
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        import pytest
        pytest.skip("root reads any file")
    log = tmp_path / "kmsg"
    log.write_text(KMSG)
    log.chmod(0)
    read = xid.read_log(log)
    assert read.text is None and "no permission" in read.problem
