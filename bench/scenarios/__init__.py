"""One module per scenario; each has ``SERVERS`` (who is measured), ``prepare`` and ``run``."""
