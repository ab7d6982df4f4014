"""The published CLAP benchmarks as one fixed protocol: readers for the public data layouts (readers.py),
the protocols (protocols.yaml), and the suite that evaluates checkpoints on them (suite.py)."""
