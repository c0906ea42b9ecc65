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
