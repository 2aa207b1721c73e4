"""One folder per strategy: config.py (torch-free settings) and strategy.py (train)."""
