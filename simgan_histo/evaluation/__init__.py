"""Metrics, realism measures, the predict/evaluate library."""
