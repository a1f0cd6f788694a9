"""The AWS-managed KMS key (``aws/ecr``) a repository gets with KMS encryption and no key."""

from __future__ import annotations

import uuid

_NAMESPACE = uuid.UUID("5f0c7a6e-6b1d-4c4b-9a57-0e2c1f9d3a10")  # openecr's, fixed forever


def aws_managed_key_arn(account: str, region: str) -> str:
    """``arn:aws:kms:<region>:<account>:key/<uuid>``, the uuid derived from the account and the
    region, so one registry always names the same key."""
    key = uuid.uuid5(_NAMESPACE, f"aws/ecr:{account}:{region}")
    return f"arn:aws:kms:{region}:{account}:key/{key}"
