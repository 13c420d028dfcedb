"""Diagnostics and plots: read objectives and saved statistics; no training code."""
