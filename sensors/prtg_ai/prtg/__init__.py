"""PRTG's wire contract, pure: channel and result model, renderers and validator.

Nothing in here does I/O; every sensor result passes through these modules on its
way to stdout or to an HTTP response.
"""

from prtg_ai.prtg.model import Channel, SensorResult
from prtg_ai.prtg.render import render, to_legacy, to_v2
from prtg_ai.prtg.validate import validate

__all__ = ["Channel", "SensorResult", "render", "to_legacy", "to_v2", "validate"]
