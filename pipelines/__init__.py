"""Offline pipelines: thin command-line stages over the `snakeweb` library (`python -m pipelines --help`)."""
