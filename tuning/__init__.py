"""The driver: CLI, sweep (Ray Tune + Optuna), MLflow tracking, promotion, evaluation report."""
