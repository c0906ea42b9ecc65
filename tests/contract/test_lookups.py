"""Value lookups: PRTG's XML structure, and in step with the channels that use them.

That every value a sensor emits on a lookup channel is defined is checked on each result
(``support.check_channels``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from prtg_ai.catalog import load
from prtg_ai.catalog.lookups import STATES, load_lookups
from prtg_ai.core import registry

REPO = Path(__file__).resolve().parents[2]
OVL_FILES = sorted((REPO / "lookups").glob("*.ovl"))


def test_there_are_lookups():
    assert OVL_FILES


@pytest.mark.parametrize("path", OVL_FILES, ids=lambda p: p.name)
def test_ovl_has_the_structure_prtg_expects(path):
    root = ET.parse(path).getroot()
    assert root.tag == "ValueLookup"
    assert root.get("id") == path.stem, "file name must equal the lookup id"
    assert root.get("id").startswith("prtgai.")
    assert root.get("undefinedState") in STATES
    assert root.get("{http://www.w3.org/2001/XMLSchema-instance}noNamespaceSchemaLocation") == "PaeValueLookup.xsd"
    [lookups] = list(root)
    assert lookups.tag == "Lookups"
    values = []
    for item in lookups:
        assert item.tag == "SingleInt"
        assert item.get("state") in STATES  # exactly Ok / Warning / Error / None
        values.append(int(item.get("value")))
        assert item.text and item.text.strip()
    assert len(values) == len(set(values)) and values == sorted(values)
    assert int(root.get("desiredValue")) in values
    desired_state = next(i.get("state") for i in lookups if int(i.get("value")) == int(root.get("desiredValue")))
    assert desired_state == "Ok", "the desired value must be an Ok state"


def _used_lookups() -> set[str]:
    return {spec.lookup for sid in registry.sensor_ids() for spec in load(sid) if spec.lookup}


def test_no_lookup_is_unused_and_every_used_one_exists():
    defined = set(load_lookups())
    assert _used_lookups() <= defined
    assert defined - _used_lookups() == set(), "lookups no channel uses"
    assert {p.stem for p in OVL_FILES} == defined


def test_ovl_escapes_what_xml_reserves_and_parses():
    from prtg_ai.build.artifacts import ovl_text
    from prtg_ai.catalog.lookups import Lookup

    hostile = 'a & b <c> "d"'
    lk = Lookup(f"prtgai.{hostile}", 0, "Warning")
    lk.values = {1: ("Error", f"</SingleInt>{hostile}"), 0: ("Ok", hostile)}
    text = ovl_text(lk)
    assert 'id="prtgai.a &amp; b &lt;c&gt; &quot;d&quot;"' in text
    assert ">&lt;/SingleInt&gt;a &amp; b &lt;c&gt; \"d\"</SingleInt>" in text
    root = ET.fromstring(text.encode())
    assert root.get("id") == f"prtgai.{hostile}"
    assert [(i.get("value"), i.get("state"), i.text) for i in root.find("Lookups")] == [
        ("0", "Ok", hostile), ("1", "Error", f"</SingleInt>{hostile}")]
