"""Language-model core (no Dagster): models, training loop, evaluation, checkpoints, sampling."""
