"""Generated blocks inside hand-written Markdown: the one helper that finds and replaces them.

A generated block is the text between two markers, each on a line of its own::

    <!-- BEGIN GENERATED: channels/gpu -->
    ...what a renderer wrote...
    <!-- END GENERATED: channels/gpu -->

The name says which renderer owns the block (``build/docs.py`` knows them all).
``prtg-ai render``, ``benchmarks/run.py`` and ``tests/reliability/report.py`` all write
through this module, so every block in the README and ``docs/`` has one shape and one check.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

_BEGIN = "<!-- BEGIN GENERATED: "
_END = "<!-- END GENERATED: "
# A marker starts a line; the same words inside a sentence (documentation about markers) are not one.
_MARKER = re.compile(r"^<!-- (BEGIN|END) GENERATED: ", re.M)
_BLOCK = re.compile(r"^<!-- BEGIN GENERATED: (?P<name>[\w./-]+) -->\n(?P<body>.*?)^<!-- END GENERATED: (?P=name) -->$",
                    re.S | re.M)


def markers(name: str) -> tuple[str, str]:
    """The BEGIN and END lines of block ``name``."""
    return f"{_BEGIN}{name} -->", f"{_END}{name} -->"


def blocks(text: str) -> dict[str, str]:
    """Name -> body of every generated block in ``text``, in order.

    Raises ValueError for a marker without its partner (or not on a line of its own) and for
    a name used twice: a broken marker is an error, never a block that nobody checks.
    """
    found = [(m["name"], m["body"]) for m in _BLOCK.finditer(text)]
    if len(_MARKER.findall(text)) != 2 * len(found):
        raise ValueError("a GENERATED marker without its partner (BEGIN and END must name the same block, "
                         "each on a line of its own)")
    names = [name for name, _ in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"generated block named twice: {', '.join(twice)}")
    return dict(found)


def splice(text: str, render: Callable[[str], str | None]) -> str:
    """``text`` with each block's body replaced by ``render(name)``; None leaves a block as it is."""
    blocks(text)

    def replace(m: re.Match) -> str:
        body = render(m["name"])
        return m[0] if body is None else block(m["name"], body)

    return _BLOCK.sub(replace, text)


def block(name: str, body: str) -> str:
    """Block ``name`` holding ``body``: the markers, the body without surrounding blank lines."""
    begin, end = markers(name)
    body = body.strip("\n")
    return f"{begin}\n{body}\n{end}" if body else f"{begin}\n{end}"


def splice_file(path: Path, name: str, body: str) -> bool:
    """Replace block ``name`` in the file at ``path``; True when the file changed.

    ValueError when the file has no such block (a renamed page should fail loudly, not be skipped).
    """
    text = path.read_text(encoding="utf-8")
    if name not in blocks(text):
        raise ValueError(f"{path}: no generated block {name!r}")
    new = splice(text, lambda n: body if n == name else None)
    if new != text:
        path.write_text(new, encoding="utf-8", newline="\n")
    return new != text
