"""Metrics: pure functions of predictions and references. Names say how they are computed."""
