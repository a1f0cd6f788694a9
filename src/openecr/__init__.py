"""openecr: a self-hostable container registry that speaks Amazon ECR's API and the OCI
Distribution API."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
