"""Token core (no Dagster): BPE tokenizer training and token shard files."""
