"""The calendar types the spend sensors use, without the cost of ``import datetime`` on Python 3.11.

On 3.11 ``import datetime`` runs the whole pure-Python implementation and then
replaces it with the C module ``_datetime``; 3.12 moved the pure one aside. The C
module's classes are the very objects ``datetime`` exports, so importing them
directly changes nothing but the start-up (benchmark row "start-up: gpu_spend from
a fresh cache"; this is the one place that hand-tunes an import for it).
"""

from __future__ import annotations

try:
    from _datetime import date, datetime, timedelta, timezone
except ImportError:  # an interpreter built without the C module
    from datetime import date, datetime, timedelta, timezone

__all__ = ["date", "datetime", "timedelta", "timezone"]
