"""The agent imports its served sensors before the first request and freezes what never dies."""

from __future__ import annotations

import gc
import sys

from prtg_ai.agent.server import _settle_heap


def test_served_sensors_are_imported_and_the_startup_heap_is_frozen():
    sys.modules.pop("prtg_ai.checkpoint_volume.checkpoint_volume", None)
    gc.unfreeze()
    try:
        _settle_heap(("checkpoint_volume", "no_such_sensor"))  # an unknown id is logged, not raised
        assert "prtg_ai.checkpoint_volume.checkpoint_volume" in sys.modules
        frozen = gc.get_freeze_count()
        assert frozen > 1000, frozen  # modules, functions, catalogue rows: out of every later full pass
    finally:
        gc.unfreeze()
