"""No function of the pack or the installer is 60 lines or longer (issue 18, "Must show").

A long function is where reading, judging and reporting get tangled; past 60 lines
it is split into named steps. A function's length is ``end_lineno - lineno + 1`` of
its ``def`` (decorators not counted); a nested function counts inside its parent and
on its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TREES = (REPO / "sensors" / "prtg_ai", REPO / "installer" / "prtg_ai_installer")
LIMIT = 60  # lines; a function this long or longer fails

def function_sizes(source: str) -> list[tuple[str, int, int]]:
    """(qualified name, first line, length in lines) of every function in ``source``."""
    sizes = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                sizes.append((prefix + child.name, child.lineno, child.end_lineno - child.lineno + 1))
                walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")
            else:
                walk(child, prefix)

    walk(ast.parse(source), "")
    return sizes


def all_sizes() -> dict[str, tuple[int, int]]:
    """``path::name`` -> (first line, length) for every function under TREES."""
    found = {}
    for tree in TREES:
        for path in sorted(tree.rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            for name, line, size in function_sizes(path.read_text(encoding="utf-8")):
                found[f"{rel}::{name}"] = (line, size)
    return found


def test_no_function_is_60_lines_or_more():
    offenders = [f"{key} (line {line}) is {size} lines" for key, (line, size) in sorted(all_sizes().items())
                 if size >= LIMIT]
    assert offenders == [], f"split these into named steps (limit: under {LIMIT} lines):\n" + "\n".join(offenders)


def test_the_measure_counts_the_def_to_its_last_line_without_decorators():
    body = "".join(f"    x{i} = {i}\n" for i in range(58))
    source = ("import functools\n\n\n@functools.lru_cache\n@staticmethod\ndef long():\n" + body + "    return 1\n\n\n"
              "class K:\n    def short(self):\n        def inner():\n            return 2\n        return inner\n")
    sizes = {name: (line, size) for name, line, size in function_sizes(source)}
    assert sizes == {"long": (6, 60), "K.short": (69, 4), "K.short.inner": (70, 2)}
