"""What every service shares: the clock and the repository lookup with ECR's error."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from openecr.domain.model import Repository
from openecr.domain.registries import account_of
from openecr.errors import RepositoryNotFound
from openecr.ports.metadata import Transaction

Clock = Callable[[], datetime]

# Raises AccessDenied unless the caller of the request being served may perform ECR's action
# (``BatchImportUpstreamImage``, ``CreateRepository``...) on the repository it names, as its
# API decides (a no-op without authentication).
Permit = Callable[[str], None]


def utcnow() -> datetime:
    return datetime.now(UTC)


def require_repository(tx: Transaction, registry_id: str, name: str) -> Repository:
    """The repository, or raise RepositoryNotFound with ECR's message."""
    repo = tx.get_repository(registry_id, name)
    if repo is None:
        raise RepositoryNotFound(name, account_of(registry_id))
    return repo
