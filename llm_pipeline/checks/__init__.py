"""Asset checks: great-expectations suites for tables, direct checks for tensors and models."""
