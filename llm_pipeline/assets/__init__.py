"""Dagster assets, one module per stage: read inputs, call the core, write, report metadata."""
