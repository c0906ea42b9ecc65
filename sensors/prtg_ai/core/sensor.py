"""Sensor base class: declare parameters, read through backends, build catalogued channels.

A sensor follows acquire -> evaluate -> summarise (nagiosplugin): ``run`` reads
through ``prtg_ai.backends``, turns data into channels with ``self.channel``
(which takes name, unit and limits from the catalogue) and returns a
``SensorResult``. Errors are raised as ``ConfigError`` / ``SensorError``; the guarded
runtime renders them.
"""

from __future__ import annotations

from prtg_ai.catalog import Catalog, load
from prtg_ai.core.context import Context
from prtg_ai.core.log import get_logger
from prtg_ai.core.params import Param

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar
from prtg_ai.prtg.model import Channel, SensorResult


class Sensor:
    """Base class of every sensor."""

    id: ClassVar[str] = ""
    title: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()
    # Default PRTG scanning interval in seconds (device templates use it).
    interval: ClassVar[int] = 60

    def __init__(self, ctx: Context, values: dict[str, Any]):
        self.ctx = ctx
        self.values = values
        self.catalog: Catalog = load(self.id)
        self.log = get_logger(f"prtg_ai.{self.id}")

    def channel(self, key: str, value, **kwargs) -> Channel:
        """Build the catalogued channel ``key`` with ``value``."""
        return self.catalog.make(key, value, **kwargs)

    def state_identity(self) -> dict[str, Any]:
        """The parameters that identify this sensor instance's state file."""
        return {p.name: str(self.values.get(p.name)) for p in self.params if p.state_key}

    def run(self) -> SensorResult:  # pragma: no cover - abstract
        raise NotImplementedError
