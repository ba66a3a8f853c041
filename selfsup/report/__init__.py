"""Accuracy tables and figures of a study."""
