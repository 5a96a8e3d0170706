"""The `assay` command line, built on the client. `main.py` is the only module that reads the environment."""
