"""Metrics, shift and OOD evaluation, and figures: pure functions over probabilities (no Ray, no MLflow)."""
