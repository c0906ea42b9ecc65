"""The checkpoint_volume sensor (growth and time to full of a checkpoint folder or volume)."""
