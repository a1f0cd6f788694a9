"""Account settings (GetAccountSetting / PutAccountSetting): one registry document per setting.

A setting never put reads as its default. ``blob_mounting_enabled`` is the check /v2's
cross-repository mounts make inside their own transaction.
"""

from __future__ import annotations

import json

from openecr.errors import InvalidParameter, ValidationError
from openecr.ports.metadata import MetadataStore, Transaction

KIND = "account-setting"

BASIC_SCAN_TYPE_VERSION = "BASIC_SCAN_TYPE_VERSION"
REGISTRY_POLICY_SCOPE = "REGISTRY_POLICY_SCOPE"
BLOB_MOUNTING = "BLOB_MOUNTING"

# name -> (default, allowed values in the order messages list them)
SETTINGS: dict[str, tuple[str, tuple[str, ...]]] = {
    BASIC_SCAN_TYPE_VERSION: ("AWS_NATIVE", ("AWS_NATIVE", "CLAIR")),
    REGISTRY_POLICY_SCOPE: ("V2", ("V1", "V2")),
    BLOB_MOUNTING: ("ENABLED", ("ENABLED", "DISABLED")),
}


def check_name(name: str) -> None:
    """Raise ValidationError for a name that is not an account setting."""
    if name not in SETTINGS:
        raise ValidationError(
            f"Invalid account setting name '{name}': must be one of [{', '.join(SETTINGS)}]"
        )


def check_value(name: str, value: str) -> None:
    """Raise InvalidParameter for a value the setting does not take."""
    allowed = SETTINGS[name][1]
    if value not in allowed:
        raise InvalidParameter.constraint(
            "value", f"Member must satisfy enum value set: [{', '.join(allowed)}]"
        )


def setting_value(tx: Transaction, registry_id: str, name: str) -> str:
    """The setting's value in the registry: the stored one, else its default."""
    body = tx.get_document(registry_id, KIND, name)
    if body is None:
        return SETTINGS[name][0]
    return str(json.loads(body)["value"])


def blob_mounting_enabled(tx: Transaction, registry_id: str) -> bool:
    """Whether /v2 cross-repository mounts link blobs in this registry (BLOB_MOUNTING)."""
    return setting_value(tx, registry_id, BLOB_MOUNTING) == "ENABLED"


class AccountSettingsService:
    def __init__(self, meta: MetadataStore) -> None:
        self.meta = meta

    def get(self, registry_id: str, name: str) -> str:
        """The value of setting ``name``. Raises ValidationError for an unknown name."""
        check_name(name)
        with self.meta.read() as tx:
            return setting_value(tx, registry_id, name)

    def put(self, registry_id: str, name: str, value: str) -> str:
        """Set ``name`` to ``value`` and return it. Raises ValidationError (unknown name),
        InvalidParameter (a value the setting does not take)."""
        check_name(name)
        check_value(name, value)
        with self.meta.write() as tx:
            tx.put_document(registry_id, KIND, name, json.dumps({"value": value}))
        return value
