"""The OCI Distribution API (v1.1) under ``/v2/``, on the same core as the ECR JSON API."""

from __future__ import annotations

from openecr.api.oci.app import OciApp

__all__ = ["OciApp"]
