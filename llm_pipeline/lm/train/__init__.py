"""Training: the loop, batches, budgets, devices, DDP, resumable state and the trainer process."""
