"""Trained runs on disk: checkpoints, their config, the run folders and pointers, history."""
