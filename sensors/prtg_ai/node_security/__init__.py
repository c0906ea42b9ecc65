"""The node_security sensor (exposed AI services, SSH auth failures, GPU device access)."""
