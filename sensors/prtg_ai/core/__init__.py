"""Sensor runtime: base class, registry, parameters, context, state store, guarded execution."""
