"""Shared maths of the sensors: counters and rates, trends, baselines, small records. Pure: no I/O."""
