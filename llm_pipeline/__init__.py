"""llm-pipeline: train language models from scratch on your own text, as Dagster assets."""

__version__ = "0.1.0"
