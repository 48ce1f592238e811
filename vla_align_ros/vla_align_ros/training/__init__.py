"""Training loops and evaluation (pure PyTorch)."""
