"""PRTG's fixed vocabularies (reference: prtg-formats.md §1.3 and §3).

Script v2's ``kind`` names come from community implementations, not from a
published schema (UNCONFIRMED): they live only in ``V2_KIND_BY_UNIT`` so a wrong
guess is a one-line fix.
"""

UNITS = (
    "BytesBandwidth", "BytesMemory", "BytesDisk", "Temperature", "Percent",
    "TimeResponse", "TimeSeconds", "Custom", "Count", "CPU", "BytesFile",
    "SpeedDisk", "SpeedNet", "TimeHours",
)
SIZES = (
    "One", "Kilo", "Mega", "Giga", "Tera", "Byte", "KiloByte", "MegaByte",
    "GigaByte", "TeraByte", "Bit", "KiloBit", "MegaBit", "GigaBit", "TeraBit",
)
SPEED_TIMES = ("Second", "Minute", "Hour", "Day")
MODES = ("Absolute", "Difference")
DECIMAL_MODES = ("Auto", "All")

TEXT_LIMIT = 2000
CHANNEL_LIMIT = 50
V2_MIN_ID = 10
V2_MAX_ID = 2_147_483_647
# Python Script Advanced refuses values above 2**62 (official); apply it everywhere.
VALUE_LIMIT = 2 ** 62

# UNCONFIRMED mapping (see module docstring); units without a known kind become
# "custom" with a display unit.
V2_KIND_BY_UNIT = {
    "Count": "count",
    "Percent": "percent",
    "CPU": "percent_cpu",
    "TimeSeconds": "time_seconds",
    "TimeResponse": "time_milliseconds",
    "BytesDisk": "size_bytes_disk",
    "BytesFile": "size_bytes_file",
    "BytesMemory": "size_bytes_memory",
    "Temperature": "temperature_celsius",
}
V2_STATUSES = ("ok", "warning", "error")
V2_TYPES = ("integer", "float", "lookup")

# Units for people reading a message or a table (PRTG scales channels itself).
BINARY_BYTES = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
DECIMAL_BITS = ("bit", "kbit", "Mbit", "Gbit", "Tbit")


def human_size(value: float, units: tuple[str, ...] = BINARY_BYTES, step: float = 1024.0, suffix: str = "") -> str:
    """``value`` (in ``units[0]``) in the largest of ``units`` it reaches, each ``step`` times the one before.

    The pack's one size formatter: ``1536`` -> ``1.5 KiB``, ``512`` -> ``512 B`` (the
    first unit whole); ``human_size(bits, DECIMAL_BITS, 1000.0, "/s")`` -> ``107.0 Gbit/s``.
    """
    for unit in units:
        if abs(value) < step or unit == units[-1]:
            return f"{value:.1f} {unit}{suffix}" if unit != units[0] else f"{int(value)} {unit}{suffix}"
        value /= step
    raise ValueError("no units")  # pragma: no cover - units is never empty
