"""Document filters (one rule a unit), their registry, the profiles that pick them, the pass that
runs them.
"""
