"""WAHA simulator: a deterministic synthetic account with ground truth, served over real HTTP."""
