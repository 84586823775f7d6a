"""What every trainer of the project shares: checkpoints, learning-rate schedule, config files."""
