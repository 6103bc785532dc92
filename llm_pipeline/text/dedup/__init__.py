"""Deduplication: exact (spilled keys), near (MinHash), passages, and the survivors' pass."""
