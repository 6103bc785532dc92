"""The train/validation split: split keys, clusters of related documents, leakage measures,
split.json.
"""
