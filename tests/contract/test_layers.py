"""The import contract: one-way layers, checked on every import statement (lazy ones too).

The layers, lowest first (docs/development.md and the README's "Layout" say the same):

    0  prtg_ai.prtg, prtg_ai.data, prtg_ai (the version)   PRTG's wire contract (pure); package data
    1  prtg_ai.maths, prtg_ai.catalog                       shared maths (pure); the channel catalogue
    2  prtg_ai.core                                         runtime, context, parameters, state
    3  prtg_ai.backends                                     the only modules that touch the world
    4  one package per sensor family (gpu, gpu_spend, ...)  sensors and what serves only them
    5  prtg_ai.agent, prtg_ai.actions                       HTTP agent and push; actions
    6  prtg_ai.build                                        build-time renderers (tables, .ovl, .odt)
    7  prtg_ai_installer                                    puts the pack into PRTG's folders
    8  prtg_ai.cli, run_cli, commands, doctor               entry points

A module imports only its own layer or lower ones; a sensor package never imports
another sensor package; nothing imports ``prtg_ai.cli`` (the console script); and
the pure layers and the sensors reach the world only through ``backends``. The
registry finds sensors by name (``importlib`` on a string), which this test does
not see: that is the one sanctioned upward reference.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROOTS = (REPO / "sensors", REPO / "installer")

SENSOR_PACKAGES = ("gpu", "gpu_spend", "inference", "node_security", "checkpoint_volume", "east_west")
LAYERS: dict[str, int] = {
    "prtg_ai": 0, "prtg_ai.prtg": 0, "prtg_ai.data": 0,
    "prtg_ai.maths": 1, "prtg_ai.catalog": 1,
    "prtg_ai.core": 2,
    "prtg_ai.backends": 3,
    **{f"prtg_ai.{name}": 4 for name in SENSOR_PACKAGES},
    "prtg_ai.agent": 5, "prtg_ai.actions": 5,
    "prtg_ai.build": 6,
    "prtg_ai_installer": 7,
    "prtg_ai.cli": 8, "prtg_ai.run_cli": 8, "prtg_ai.commands": 8, "prtg_ai.doctor": 8,
}
# Layers whose modules must not touch the world themselves (they ask a backend).
NO_WORLD = {"prtg_ai.prtg", "prtg_ai.maths", *(f"prtg_ai.{name}" for name in SENSOR_PACKAGES)}
WORLD_MODULES = {"subprocess", "socket", "ssl", "ctypes", "shutil", "glob", "tempfile", "select", "fcntl",
                 "msvcrt", "sqlite3", "http", "urllib.request", "requests", "urllib3", "boto3", "botocore",
                 "pynvml", "psutil", "azure", "google"}
WORLD_CALLS = {"open", "os.open", "os.listdir", "os.scandir", "os.stat", "os.lstat", "os.walk", "os.remove",
               "os.unlink", "os.rename", "os.replace", "os.makedirs", "os.mkdir", "os.rmdir", "os.statvfs",
               "os.access", "os.readlink", "os.read", "os.write", "os.path.exists", "os.path.isfile",
               "os.path.isdir", "os.path.getsize", "os.path.getmtime"}
WORLD_METHODS = {"read_text", "read_bytes", "write_text", "write_bytes", "iterdir", "glob", "rglob", "mkdir",
                 "unlink", "touch", "is_file", "is_dir", "exists"}


def owner(module: str) -> str | None:
    """The layer key a module belongs to: its longest prefix in LAYERS."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in LAYERS and (key != "prtg_ai" or module == "prtg_ai"):  # a new top-level module has no layer
            return key
    return None


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(tree: ast.AST, known: set[str]) -> list[tuple[int, str]]:
    """(line, module) of every import of ours; ``from pkg import sub`` counts as ``pkg.sub`` when sub is a module."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.append((node.lineno, sub if sub in known else node.module))
    return [(line, name) for line, name in found if name.split(".")[0] in ("prtg_ai", "prtg_ai_installer")]


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def world_uses(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) of every world-touching import or call in a module."""
    uses = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            if name in WORLD_MODULES or name.split(".")[0] in WORLD_MODULES - {"urllib.request"}:
                uses.append((node.lineno, f"import {name}"))
        if isinstance(node, ast.Call):
            called = _dotted(node.func)
            if called in WORLD_CALLS:
                uses.append((node.lineno, f"{called}()"))
            elif isinstance(node.func, ast.Attribute) and node.func.attr in WORLD_METHODS \
                    and not called.startswith(("self.", "provider.", "session.")):
                uses.append((node.lineno, f".{node.func.attr}()"))
    return uses


def check(roots) -> list[str]:
    """Every breach of the contract in the modules under ``roots``."""
    modules: dict[str, Path] = {}
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            if "__pycache__" not in path.parts:
                modules[module_name(path, root)] = path
    known = set(modules)
    breaches = []
    for name, path in modules.items():
        mine = owner(name)
        if mine is None:
            breaches.append(f"{name}: in no layer (add its package to LAYERS and docs/development.md)")
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for line, target in imported(tree, known):
            theirs = owner(target)
            where = f"{path.relative_to(path.parents[len(name.split('.'))])}:{line}"
            if theirs is None:
                continue
            if target == "prtg_ai.cli" and name != "prtg_ai.cli":
                breaches.append(f"{where}: {name} imports the console script prtg_ai.cli")
            elif LAYERS[theirs] > LAYERS[mine]:
                breaches.append(f"{where}: {name} (layer {LAYERS[mine]}) imports {target} (layer {LAYERS[theirs]})")
            elif LAYERS[mine] == 4 and theirs != mine and LAYERS[theirs] == 4:
                breaches.append(f"{where}: sensor package {mine} imports another sensor package, {theirs}")
            elif mine in ("prtg_ai.prtg", "prtg_ai.maths") and theirs != mine and theirs != "prtg_ai":
                breaches.append(f"{where}: {mine} is pure and imports only itself, but imports {target}")
        if mine in NO_WORLD:
            for line, what in world_uses(tree):
                breaches.append(f"{path.name}:{line}: {name} touches the world ({what}); ask a backend")
    return breaches


def test_the_pack_keeps_its_layers():
    breaches = check(ROOTS)
    assert breaches == [], "\n".join(breaches)


@pytest.mark.parametrize("module, source, expected", [
    ("prtg_ai/prtg/bad.py", "from prtg_ai.catalog.lookups import load_lookups\n", "(layer 0) imports prtg_ai.catalog"),
    ("prtg_ai/prtg/bad.py", "from prtg_ai import data\n", "is pure and imports only itself"),
    ("prtg_ai/core/bad.py", "def f():\n    from prtg_ai.gpu import gpu\n", "(layer 2) imports prtg_ai.gpu.gpu (layer 4)"),
    ("prtg_ai/gpu/bad.py", "from prtg_ai.gpu_spend import ce_cache\n", "imports another sensor package"),
    ("prtg_ai/build/bad.py", "from prtg_ai_installer import layout\n", "(layer 6) imports prtg_ai_installer"),
    ("prtg_ai/commands2.py", "x = 1\n", "in no layer"),
    ("prtg_ai/agent/bad.py", "import prtg_ai.cli\n", "imports the console script"),
    ("prtg_ai/east_west/bad.py", "def f(p):\n    return open(p).read()\n", "touches the world (open())"),
    ("prtg_ai/maths/bad.py", "import subprocess\n", "touches the world (import subprocess)"),
    ("prtg_ai/gpu/bad2.py", "def f(p):\n    return p.read_text()\n", "touches the world (.read_text())"),
])
def test_the_check_catches_each_kind_of_breach(tmp_path, module, source, expected):
    root = tmp_path / "src"
    for package in ("prtg_ai", "prtg_ai/prtg", "prtg_ai/core", "prtg_ai/gpu", "prtg_ai/gpu_spend", "prtg_ai/build",
                    "prtg_ai/agent", "prtg_ai/east_west", "prtg_ai/maths", "prtg_ai/catalog"):
        (root / package).mkdir(parents=True, exist_ok=True)
        (root / package / "__init__.py").write_text("")
    for stub in ("prtg_ai/data.py", "prtg_ai/catalog/lookups.py", "prtg_ai/gpu/gpu.py", "prtg_ai/gpu_spend/ce_cache.py", "prtg_ai/cli.py"):
        (root / stub).write_text("")
    installer = tmp_path / "inst" / "prtg_ai_installer"
    installer.mkdir(parents=True)
    (installer / "__init__.py").write_text("")
    (installer / "layout.py").write_text("")
    (root / module).write_text(source)
    breaches = check((root, tmp_path / "inst"))
    assert len(breaches) == 1 and expected in breaches[0], breaches
