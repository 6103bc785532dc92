"""Experiment tracking in MLflow, on only when MLFLOW_TRACKING_URI is set."""
