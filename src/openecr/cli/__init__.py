"""The ``openecr`` command line."""
