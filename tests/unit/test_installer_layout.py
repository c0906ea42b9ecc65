"""PRTG folder layout per role, and PRTG folder detection on Windows (PureWindowsPath)."""

from __future__ import annotations

from pathlib import PurePosixPath, PureWindowsPath

import pytest

from prtg_ai_installer import layout


def test_roles_accept_repeats_and_commas_in_a_stable_order():
    assert layout.parse_roles(["probe,core", "core"]) == ("core", "probe")
    assert layout.parse_roles(["ssh-target"]) == ("ssh-target",)


@pytest.mark.parametrize("values, fragment", [
    (["gateway"], "unknown role 'gateway'"),
    ([","], "no role given"),
    (["core,ssh-target"], "run it separately"),
])
def test_bad_role_lists_are_refused(values, fragment):
    with pytest.raises(layout.LayoutError, match=fragment):
        layout.parse_roles(values)


def test_windows_folders_under_program_files_x86():
    root = layout.DEFAULT_WINDOWS_PRTG_DIR
    assert str(layout.folder_path(root, layout.LOOKUPS)) == r"C:\Program Files (x86)\PRTG Network Monitor\lookups\custom"
    assert str(layout.folder_path(root, layout.TEMPLATES)) == r"C:\Program Files (x86)\PRTG Network Monitor\devicetemplates"
    assert str(layout.folder_path(root, layout.EXEXML)) == r"C:\Program Files (x86)\PRTG Network Monitor\Custom Sensors\EXEXML"
    assert str(layout.folder_path(root, layout.PYTHON)) == r"C:\Program Files (x86)\PRTG Network Monitor\Custom Sensors\python"
    assert str(layout.folder_path(root, layout.SCRIPTS)) == r"C:\Program Files (x86)\PRTG Network Monitor\Custom Sensors\scripts"


def test_ssh_target_folder_is_var_prtg_scriptsxml():
    assert str(layout.folder_path(PurePosixPath(layout.DEFAULT_SSH_DIR), layout.SCRIPTSXML)) == "/var/prtg/scriptsxml"
    assert layout.default_root(["ssh-target"], platform="linux") == PurePosixPath("/var/prtg")


def test_folders_per_role():
    assert layout.folders_for(["core"]) == (layout.LOOKUPS, layout.TEMPLATES)
    assert layout.folders_for(["probe", "core"]) == (layout.LOOKUPS, layout.TEMPLATES, layout.EXEXML,
                                                    layout.PYTHON, layout.SCRIPTS)
    assert layout.folders_for(["ssh-target"]) == (layout.SCRIPTSXML,)


def test_detection_takes_the_registry_folder_when_it_exists():
    seen = []

    def registry(subkey, name):
        seen.append((subkey, name))
        if subkey == r"SOFTWARE\WOW6432Node\Paessler\PRTG Network Monitor":
            return r'"D:\Apps\PRTG\PRTG Server.exe"'
        return None

    found = layout.default_root(["core", "probe"], platform="win32", read_registry=registry,
                                is_dir=lambda p: p == PureWindowsPath(r"D:\Apps\PRTG"))
    assert found == PureWindowsPath(r"D:\Apps\PRTG")
    assert seen[0] == (r"SOFTWARE\WOW6432Node\Paessler\PRTG Network Monitor", "exepath")


def test_detection_skips_registry_values_naming_missing_folders_and_falls_back():
    found = layout.detect_windows_prtg_dir(lambda s, n: r"E:\gone", is_dir=lambda p: False)
    assert found == PureWindowsPath(r"C:\Program Files (x86)\PRTG Network Monitor")
    # The uninstall entry's InstallLocation is used when the Paessler key has nothing.
    found = layout.detect_windows_prtg_dir(
        lambda s, n: r"F:\PRTG Network Monitor\\" if n == "InstallLocation" else None, is_dir=lambda p: True)
    assert found == PureWindowsPath(r"F:\PRTG Network Monitor")


def test_no_default_root_for_core_or_probe_off_windows():
    assert layout.default_root(["core"], platform="linux") is None
    assert layout.default_root(["ssh-target"], platform="win32") is None
