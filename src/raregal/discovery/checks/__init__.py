"""Checks of each found cluster (stability, merge suggestions, artifact classes)."""
