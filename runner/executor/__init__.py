"""Running one build: checkout, environment, `make` as an owned process tree, the log."""
