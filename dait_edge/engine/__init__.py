"""The training loop, evaluation, checkpoints and distributed set-up shared by every method."""
