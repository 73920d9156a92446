"""The `wastex` command line: one entry point that dispatches to each deployable unit."""
