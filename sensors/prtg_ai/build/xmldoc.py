"""PRTG's XML files (``.ovl`` lookups, ``.odt`` device templates), built with ElementTree.

Names, texts and attribute values are set as data and escaped by the serializer,
so a value holding ``& < > "`` can neither break a file nor add markup to it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'


# Empty elements written as <x /> (ElementTree's default) rather than <x></x>: both are the
# same XML, but whether PRTG's template importer reads the short form is UNCONFIRMED
# (docs/unconfirmed.md); set False to write the long form everywhere.
SHORT_EMPTY_ELEMENTS = True


def document(root: ET.Element, comment: str) -> str:
    """The text of a file holding ``root``: declaration, ``comment``, two-space indents, final newline."""
    if "--" in comment or comment.endswith("-"):
        raise ValueError(f"not allowed in an XML comment: {comment!r}")
    ET.indent(root, "  ")
    body = ET.tostring(root, encoding="unicode", short_empty_elements=SHORT_EMPTY_ELEMENTS)
    return f"{DECLARATION}\n<!-- {comment} -->\n{body}\n"


def parse(text: str) -> ET.Element:
    """The root element of a file ``document`` wrote (its comment is dropped)."""
    return ET.fromstring(text.encode("utf-8"))
