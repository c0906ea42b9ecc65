"""No block of six or more lines is repeated across the source (issue 18, "Must show").

Lines are compared normalised: without indentation and comments; blank lines,
docstrings and imports left out (pylint's duplicate-code defaults), so a copy
re-indented or re-commented still counts. Every window of WINDOW consecutive
normalised lines is hashed; a window seen twice is a duplicate, and overlapping
duplicate windows of the same two places are reported once, as one block with both
locations. A shared step belongs in a helper in the lowest layer its users may
import (tests/contract/test_layers.py).
"""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TREES = (REPO / "sensors", REPO / "installer" / "prtg_ai_installer")
WINDOW = 6  # normalised lines


def normalised(text: str) -> list[tuple[int, str]]:
    """(line number, text without indentation or comment) of every line of code that counts.

    Left out, as pylint's duplicate-code check does by default: blank lines, comments,
    docstrings and import statements (the same imports are not a copied step).
    """
    lines = text.splitlines()
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:  # a comment ends its line: cut it off there
            row, col = token.start
            lines[row - 1] = lines[row - 1][:col]
    for node in ast.walk(ast.parse(text)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            _blank(lines, body[0])  # a docstring
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            _blank(lines, node)
    return [(number, line.strip()) for number, line in enumerate(lines, 1) if line.strip()]


def _blank(lines: list[str], node: ast.AST) -> None:
    for row in range(node.lineno, node.end_lineno + 1):
        lines[row - 1] = ""


def duplicate_blocks(files: dict[str, str]) -> list[str]:
    """One line per repeated block: ``a.py:10-17 = b.py:40-47``; ``files`` maps a name to its text."""
    lines = {name: normalised(text) for name, text in files.items()}
    first: dict[tuple[str, ...], tuple[str, int]] = {}
    pairs: set[tuple[str, int, str, int]] = set()
    for name, rows in lines.items():
        for i in range(len(rows) - WINDOW + 1):
            key = tuple(text for _, text in rows[i:i + WINDOW])
            seen = first.setdefault(key, (name, i))
            if seen != (name, i) and not (seen[0] == name and i - seen[1] < WINDOW):
                pairs.add((*seen, name, i))
    found = []
    for a, i, b, j in sorted(pairs):
        if (a, i - 1, b, j - 1) in pairs:
            continue  # inside a block already reported from its start
        n = WINDOW
        while (a, i + n - WINDOW + 1, b, j + n - WINDOW + 1) in pairs:
            n += 1
        found.append(f"{a}:{lines[a][i][0]}-{lines[a][i + n - 1][0]} = {b}:{lines[b][j][0]}-{lines[b][j + n - 1][0]}")
    return found


def test_no_block_of_six_lines_is_repeated():
    files = {path.relative_to(REPO).as_posix(): path.read_text(encoding="utf-8")
             for tree in TREES for path in sorted(tree.rglob("*.py"))}
    found = duplicate_blocks(files)
    assert found == [], "repeated blocks (move each into one shared helper):\n" + "\n".join(found)


BLOCK = "a = 1\nb = 2\nc = 3\nd = 4\ne = 5\nf = 6\ng = 7\n"


@pytest.mark.parametrize("files, expected", [
    # seven lines copied, re-indented and re-commented: one block, both places, whole length
    ({"x.py": "import os\n" + BLOCK, "y.py": "def f():\n" + "".join(f"    {line}  # {line}?\n\n    # why\n"
                                                                    for line in BLOCK.splitlines())},
     ["x.py:2-8 = y.py:2-20"]),
    # a '#' inside a string is not a comment
    ({"x.py": BLOCK.replace("a = 1", "a = '#1'"), "y.py": BLOCK}, ["x.py:2-7 = y.py:2-7"]),
    # five lines in common are not a block
    ({"x.py": BLOCK, "y.py": "\n".join(BLOCK.splitlines()[:5]) + "\nz = 0\n"}, []),
    # a block repeated inside one file counts too
    ({"x.py": BLOCK + "pass\n" + BLOCK}, ["x.py:1-7 = x.py:9-15"]),
    # a run of one repeated line is not a copy of itself
    ({"x.py": "pass\n" * 9}, []),
    # nor are the same docstring and six imports
    ({"x.py": '"""Doc."""\nimport os\nimport re\nimport sys\nfrom a import (b,\n    c)\nimport json\nx = 1\n',
      "y.py": '"""Doc."""\nimport os\nimport re\nimport sys\nfrom a import (b,\n    c)\nimport json\ny = 2\n'}, []),
    # code after a docstring and after imports still counts, with its real line numbers
    ({"x.py": 'def f():\n    """Doc\n    more."""\n' + "".join(f"    {line}\n" for line in BLOCK.splitlines()),
      "y.py": "import os\n" + BLOCK}, ["x.py:4-10 = y.py:2-8"]),
])
def test_the_check_finds_blocks_and_names_both_places(files, expected):
    assert duplicate_blocks(files) == expected
