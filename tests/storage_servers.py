"""Real storage servers for tests: PostgreSQL, SeaweedFS (S3), openecr replicas and haproxy on
loopback ports. One implementation with ``make cluster``: ``scripts/localcluster.py``, whose
classes this module re-exports. Starting one is starting a process, so only tests marked
``slow`` use them (the session fixtures ``postgres`` and ``seaweedfs`` in ``tests/conftest.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from localcluster import (
    PG_USER,
    Haproxy,
    PostgresCluster,
    Replica,
    SeaweedFS,
    die_with_parent,
    free_port,
    free_ports,
)

__all__ = [
    "PG_USER",
    "Haproxy",
    "PostgresCluster",
    "Replica",
    "SeaweedFS",
    "die_with_parent",
    "free_port",
    "free_ports",
]
