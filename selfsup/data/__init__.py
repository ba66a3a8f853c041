"""Dataset sources and splits."""
