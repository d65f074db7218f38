"""Latency histograms, structured logs and the audit log."""
