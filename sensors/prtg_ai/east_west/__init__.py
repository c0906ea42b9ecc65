"""The east_west sensor (fabric traffic: NICs, InfiniBand/RoCE, NVLink)."""
