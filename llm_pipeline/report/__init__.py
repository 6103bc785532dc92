"""Report core (no Dagster): loss and learning-rate plots and the evaluation report.

Kept free of Dagster so a report can be rendered from a finished run's metrics in a test, a
benchmark or a notebook, without an instance; the `evaluation_report` asset is a thin shell that
gathers the inputs, calls `write_report` and attaches the returned Markdown as metadata.
"""
