"""The `roadwork` command line: the process entrypoint that wires the packages together."""
