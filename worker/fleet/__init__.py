"""A simulated fleet of RR arms publishing feature messages (demo, compose, benchmarks)."""
