"""Text core (no Dagster): readers, normalisation, filters, deduplication."""
