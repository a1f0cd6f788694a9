"""Configuration: a frozen record built from arguments and ``OPENECR_*`` environment variables.

Environment variables (each overridden by the matching ``openecr serve`` option):

==============================  ==========================================================
``OPENECR_DATA_DIR``            where metadata and blobs live (default ``./.openecr``)
``OPENECR_BLOB_STORE``          where blobs live: ``file:///path`` (default: the data dir) or
                               ``memory://`` (gone with the process)
``OPENECR_S3_ENDPOINT_URL``     the S3 endpoint of an ``s3://`` blob store (default: the standard
                                AWS settings, ``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``, AWS)
``OPENECR_S3_PATH_STYLE``       ``1``: path-style S3 addressing (for servers that need it)
``OPENECR_BLOB_REDIRECT``       ``1``/``0``: /v2 blob GETs redirect to the store's presigned URLs
                                (default: on with S3, which has them)
``OPENECR_DATABASE_URL``        SQLAlchemy URL of the metadata store (default: SQLite in the
                                data directory)
``OPENECR_ACCOUNT_ID``          the default account (default ``123456789012``)
``OPENECR_REGION``              the default region (default ``us-east-1``)
``OPENECR_REGISTRY_HOST``       registry host template with ``{account}``/``{region}``
``OPENECR_LENIENT_MANIFESTS``   ``1`` to accept manifests whose blobs are absent
``OPENECR_CREDENTIALS``         a credentials file; turns on authentication
``OPENECR_CREATE_ON_PUSH``      ``1`` to create missing repositories on a registry (``/v2``) push
``OPENECR_WORKERS``             server processes sharing the port (default ``1``)
``OPENECR_LOG_LEVEL``           ``critical``, ``error``, ``warning``, ``info`` (default),
                                ``debug`` or ``trace``
``OPENECR_LIFECYCLE_INTERVAL``  seconds between lifecycle policy runs (default 3600; 0: off)
``OPENECR_PULL_TIMES``          ``0`` to record no pull times (default ``1``)
``OPENECR_REPLICATION_PEERS``   a TOML file of the other openecr servers replication reaches
``OPENECR_REPLICATION_LEASE``   seconds a replication worker holds a task without progress (60)
``OPENECR_REPLICATION_CHUNK``   bytes each upload request to a replication peer carries (8 MiB)
``OPENECR_VULNERABILITY_DB``    a directory of OSV JSON records that image scans match
                                packages against (default: none; scans end FAILED)
``OPENECR_GC_INTERVAL``         seconds between garbage collections (default 3600; 0: off)
``OPENECR_GC_GRACE``            seconds an unreferenced blob is kept after its last store
                                (default 3600)
``OPENECR_UPLOAD_EXPIRY``       seconds of inactivity after which an upload session expires
                                (default 86400)
``OPENECR_ACCESS_LOG``          one line per request on stderr: ``text`` (default), ``json``
                                or ``off``
``OPENECR_TLS_CERT``            a PEM certificate (chain) file: serve HTTPS (with the key)
``OPENECR_TLS_KEY``             the PEM private key of ``OPENECR_TLS_CERT``
``OPENECR_SECRETS``             a TOML file of pull-through cache secrets (secret ARN to
                                username and access token)
``OPENECR_PULL_THROUGH_TTL``    seconds a cached tag is served before the upstream is asked
                                again (default 86400)
==============================  ==========================================================

``Config.environ`` is the inverse of ``from_env``: ``openecr serve --workers N`` hands its
validated configuration to its worker processes that way.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from openecr.domain.iam_policy import is_principal_arn, principal_account, root_arn
from openecr.domain.names import is_registry_id

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
ACCESS_LOG_FORMATS = ("text", "json", "off")


class ConfigError(ValueError):
    """The configuration cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class Credential:
    access_key_id: str
    secret_access_key: str
    account_id: str
    principal: str | None = None  # an IAM/STS ARN in the account; None: the account's root

    @property
    def principal_arn(self) -> str:
        return self.principal or root_arn(self.account_id)


@dataclass(frozen=True, slots=True)
class ReplicationPeer:
    """A registry (account, region) served by another openecr, and how to reach it."""

    registry_id: str
    region: str
    endpoint: str
    access_key_id: str | None = None
    secret_access_key: str | None = None


@dataclass(frozen=True, slots=True)
class SecretEntry:
    """A pull-through cache secret: what Secrets Manager would hold under ``arn``."""

    arn: str
    username: str
    access_token: str


@dataclass(frozen=True, slots=True)
class Config:
    data_dir: Path = Path(".openecr")
    database_url: str | None = None
    blob_store: str | None = None
    s3_endpoint_url: str | None = None
    s3_path_style: bool = False
    blob_redirect: bool | None = None  # None: on for a store that presigns URLs (S3)
    account_id: str = "123456789012"
    region: str = "us-east-1"
    registry_host: str | None = None
    lenient_manifests: bool = False
    create_on_push: bool = False
    credentials_file: Path | None = None
    credentials: tuple[Credential, ...] = field(default=())
    workers: int = 1
    log_level: str = "info"
    lifecycle_interval: float = 3600.0
    pull_times: bool = True
    replication_peers_file: Path | None = None
    replication_peers: tuple[ReplicationPeer, ...] = field(default=())
    replication_lease: float = 60.0
    replication_chunk: int = 8 * 1024 * 1024
    vulnerability_db: Path | None = None
    gc_interval: float = 3600.0
    gc_grace: float = 3600.0
    upload_expiry: float = 86400.0
    access_log: str = "text"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    secrets_file: Path | None = None
    secrets: tuple[SecretEntry, ...] = field(default=())
    pull_through_ttl: float = 86400.0

    @property
    def metadata_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'metadata.db'}"

    @property
    def blob_store_url(self) -> str:
        return self.blob_store or self.data_dir.absolute().as_uri()

    @property
    def redirects_blobs(self) -> bool:
        """Whether /v2 blob GETs redirect to the blob store's presigned URLs."""
        if self.blob_redirect is not None:
            return self.blob_redirect
        return self.blob_store_url.lower().startswith("s3:")

    def validate(self) -> Config:
        if not is_registry_id(self.account_id):
            raise ConfigError(f"account id {self.account_id!r} must be 12 digits")
        if self.registry_host is not None:
            try:
                self.registry_host.format(account=self.account_id, region=self.region)
            except (KeyError, IndexError, ValueError) as error:
                raise ConfigError(
                    f"registry host template {self.registry_host!r} may only use "
                    "{account} and {region}"
                ) from error
        if self.workers < 1:
            raise ConfigError(
                f"the number of workers (--workers, OPENECR_WORKERS) must be 1 or more, "
                f"not {self.workers}"
            )
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(
                f"log level {self.log_level!r} must be one of {', '.join(LOG_LEVELS)}"
            )
        if self.access_log not in ACCESS_LOG_FORMATS:
            raise ConfigError(
                f"the access log format (--access-log, OPENECR_ACCESS_LOG) must be one of "
                f"{', '.join(ACCESS_LOG_FORMATS)}, not {self.access_log!r}"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError(
                "TLS needs both a certificate and its key (--tls-cert and --tls-key, "
                "OPENECR_TLS_CERT and OPENECR_TLS_KEY)"
            )
        for path in (self.tls_cert, self.tls_key):
            if path is not None and not path.is_file():
                raise ConfigError(f"cannot read TLS file {path}: no such file")
        if not self.lifecycle_interval >= 0:
            raise ConfigError(
                "the lifecycle interval (--lifecycle-interval, OPENECR_LIFECYCLE_INTERVAL) must "
                f"be 0 (off) or more seconds, not {self.lifecycle_interval}"
            )
        if not self.replication_lease > 0:
            raise ConfigError(
                "the replication lease (--replication-lease, OPENECR_REPLICATION_LEASE) must "
                f"be more than 0 seconds, not {self.replication_lease}"
            )
        if self.replication_chunk < 1:
            raise ConfigError(
                "the replication chunk (--replication-chunk, OPENECR_REPLICATION_CHUNK) must "
                f"be 1 byte or more, not {self.replication_chunk}"
            )
        if self.vulnerability_db is not None and not self.vulnerability_db.is_dir():
            raise ConfigError(
                "the vulnerability database (--vulnerability-db, OPENECR_VULNERABILITY_DB) must "
                f"be a directory of OSV JSON records: {self.vulnerability_db} is not a directory"
            )
        for value, what, default in (
            (
                self.gc_interval,
                "garbage collection interval (--gc-interval, OPENECR_GC_INTERVAL)",
                "0 (off)",
            ),
            (self.gc_grace, "garbage collection grace period (--gc-grace, OPENECR_GC_GRACE)", "0"),
            (self.upload_expiry, "upload expiry (--upload-expiry, OPENECR_UPLOAD_EXPIRY)", "0"),
        ):
            if not 0 <= value < float("inf"):
                raise ConfigError(f"the {what} must be {default} or more seconds, not {value}")
        if not self.pull_through_ttl >= 0:
            raise ConfigError(
                "the pull-through TTL (--pull-through-ttl, OPENECR_PULL_THROUGH_TTL) must be 0 "
                f"or more seconds, not {self.pull_through_ttl}"
            )
        return self

    def environ(self) -> dict[str, str | None]:
        """The ``OPENECR_*`` variables that make ``from_env`` build this configuration again
        (None: the variable must be unset); paths are made absolute."""

        def flag(value: bool) -> str:
            return "1" if value else "0"

        return {
            "OPENECR_DATA_DIR": str(self.data_dir.absolute()),
            "OPENECR_DATABASE_URL": self.database_url,
            "OPENECR_BLOB_STORE": self.blob_store,
            "OPENECR_S3_ENDPOINT_URL": self.s3_endpoint_url,
            "OPENECR_S3_PATH_STYLE": flag(self.s3_path_style),
            "OPENECR_BLOB_REDIRECT": None
            if self.blob_redirect is None
            else flag(self.blob_redirect),
            "OPENECR_ACCOUNT_ID": self.account_id,
            "OPENECR_REGION": self.region,
            "OPENECR_REGISTRY_HOST": self.registry_host,
            "OPENECR_LENIENT_MANIFESTS": flag(self.lenient_manifests),
            "OPENECR_CREATE_ON_PUSH": flag(self.create_on_push),
            "OPENECR_CREDENTIALS": (
                None if self.credentials_file is None else str(self.credentials_file.absolute())
            ),
            "OPENECR_WORKERS": str(self.workers),
            "OPENECR_LOG_LEVEL": self.log_level,
            "OPENECR_LIFECYCLE_INTERVAL": repr(self.lifecycle_interval),
            "OPENECR_PULL_TIMES": flag(self.pull_times),
            "OPENECR_REPLICATION_PEERS": (
                None
                if self.replication_peers_file is None
                else str(self.replication_peers_file.absolute())
            ),
            "OPENECR_REPLICATION_LEASE": repr(self.replication_lease),
            "OPENECR_REPLICATION_CHUNK": str(self.replication_chunk),
            "OPENECR_VULNERABILITY_DB": (
                None if self.vulnerability_db is None else str(self.vulnerability_db.absolute())
            ),
            "OPENECR_GC_INTERVAL": repr(self.gc_interval),
            "OPENECR_GC_GRACE": repr(self.gc_grace),
            "OPENECR_UPLOAD_EXPIRY": repr(self.upload_expiry),
            "OPENECR_ACCESS_LOG": self.access_log,
            "OPENECR_TLS_CERT": None if self.tls_cert is None else str(self.tls_cert.absolute()),
            "OPENECR_TLS_KEY": None if self.tls_key is None else str(self.tls_key.absolute()),
            "OPENECR_SECRETS": (
                None if self.secrets_file is None else str(self.secrets_file.absolute())
            ),
            "OPENECR_PULL_THROUGH_TTL": repr(self.pull_through_ttl),
        }


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def load_credentials(path: Path) -> tuple[Credential, ...]:
    """Read a TOML credentials file: ``[[credentials]]`` tables with ``access_key_id``,
    ``secret_access_key`` and ``account_id``, and optionally ``principal`` (the key's IAM user
    or role ARN in that account; default ``arn:aws:iam::<account_id>:root``)."""
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"cannot read credentials file {path}: {error}") from error
    entries = doc.get("credentials")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: expected one or more [[credentials]] tables")
    found: list[Credential] = []
    for i, entry in enumerate(entries):
        try:
            cred = Credential(
                str(entry["access_key_id"]),
                str(entry["secret_access_key"]),
                str(entry["account_id"]),
                None if entry.get("principal") is None else str(entry["principal"]),
            )
        except (KeyError, TypeError) as error:
            raise ConfigError(f"{path}: credentials[{i}] lacks {error}") from error
        if not is_registry_id(cred.account_id):
            raise ConfigError(f"{path}: credentials[{i}].account_id must be 12 digits")
        key = cred.access_key_id
        if not key or any(c == "/" or c == "," or c.isspace() for c in key):
            raise ConfigError(
                f"{path}: credentials[{i}].access_key_id must be non-empty, without '/', ',' "
                "or spaces"
            )
        if cred.principal is not None and (
            not is_principal_arn(cred.principal)
            or principal_account(cred.principal) != cred.account_id
        ):
            raise ConfigError(
                f"{path}: credentials[{i}].principal must be an IAM root, user or role ARN (or an "
                f"STS assumed-role ARN) of account {cred.account_id}, not {cred.principal!r}"
            )
        if not cred.secret_access_key:
            raise ConfigError(f"{path}: credentials[{i}].secret_access_key is empty")
        if any(c.access_key_id == key for c in found):
            raise ConfigError(f"{path}: access key {key!r} appears more than once")
        found.append(cred)
    return tuple(found)


def load_replication_peers(path: Path) -> tuple[ReplicationPeer, ...]:
    """Read a TOML peers file: ``[[peers]]`` tables with ``registry_id``, ``region``,
    ``endpoint`` (``http(s)://host:port``) and, for a peer with authentication on,
    ``access_key_id`` and ``secret_access_key`` (of a key acting in ``registry_id``)."""
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"cannot read replication peers file {path}: {error}") from error
    entries = doc.get("peers")
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: expected [[peers]] tables")
    found: list[ReplicationPeer] = []
    for i, entry in enumerate(entries):
        try:
            peer = ReplicationPeer(
                str(entry["registry_id"]),
                str(entry["region"]),
                str(entry["endpoint"]).rstrip("/"),
                entry.get("access_key_id"),
                entry.get("secret_access_key"),
            )
        except (KeyError, TypeError, AttributeError) as error:
            raise ConfigError(f"{path}: peers[{i}] lacks {error}") from error
        if not is_registry_id(peer.registry_id):
            raise ConfigError(f"{path}: peers[{i}].registry_id must be 12 digits")
        if not peer.endpoint.startswith(("http://", "https://")):
            raise ConfigError(f"{path}: peers[{i}].endpoint must be an http(s):// URL")
        if (peer.access_key_id is None) != (peer.secret_access_key is None):
            raise ConfigError(
                f"{path}: peers[{i}] needs both access_key_id and secret_access_key, or neither"
            )
        if any((p.registry_id, p.region) == (peer.registry_id, peer.region) for p in found):
            raise ConfigError(
                f"{path}: registry {peer.registry_id} in {peer.region} appears more than once"
            )
        found.append(peer)
    return tuple(found)


def load_secrets(path: Path) -> tuple[SecretEntry, ...]:
    """Read a TOML secrets file: ``[[secrets]]`` tables with ``arn``, ``username`` and
    ``accessToken`` (the members of an ECR pull-through cache secret)."""
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"cannot read secrets file {path}: {error}") from error
    entries = doc.get("secrets", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: expected [[secrets]] tables")
    found: list[SecretEntry] = []
    for i, entry in enumerate(entries):
        try:
            secret = SecretEntry(
                str(entry["arn"]), str(entry["username"]), str(entry["accessToken"])
            )
        except (KeyError, TypeError) as error:
            raise ConfigError(f"{path}: secrets[{i}] lacks {error}") from error
        if any(s.arn == secret.arn for s in found):
            raise ConfigError(f"{path}: secret {secret.arn!r} appears more than once")
        found.append(secret)
    return tuple(found)


def from_env(env: Mapping[str, str] | None = None, **overrides: object) -> Config:
    """Build a validated Config from ``env`` (default ``os.environ``), then ``overrides``
    (options given on the command line; None means not given)."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    if env.get("OPENECR_DATA_DIR"):
        values["data_dir"] = Path(env["OPENECR_DATA_DIR"])
    if env.get("OPENECR_DATABASE_URL"):
        values["database_url"] = env["OPENECR_DATABASE_URL"]
    if env.get("OPENECR_BLOB_STORE"):
        values["blob_store"] = env["OPENECR_BLOB_STORE"]
    if env.get("OPENECR_S3_ENDPOINT_URL"):
        values["s3_endpoint_url"] = env["OPENECR_S3_ENDPOINT_URL"]
    if "OPENECR_S3_PATH_STYLE" in env:
        values["s3_path_style"] = _truthy(env["OPENECR_S3_PATH_STYLE"])
    if env.get("OPENECR_BLOB_REDIRECT"):
        values["blob_redirect"] = _truthy(env["OPENECR_BLOB_REDIRECT"])
    if env.get("OPENECR_ACCOUNT_ID"):
        values["account_id"] = env["OPENECR_ACCOUNT_ID"]
    if env.get("OPENECR_REGION"):
        values["region"] = env["OPENECR_REGION"]
    if env.get("OPENECR_REGISTRY_HOST"):
        values["registry_host"] = env["OPENECR_REGISTRY_HOST"]
    if "OPENECR_LENIENT_MANIFESTS" in env:
        values["lenient_manifests"] = _truthy(env["OPENECR_LENIENT_MANIFESTS"])
    if "OPENECR_CREATE_ON_PUSH" in env:
        values["create_on_push"] = _truthy(env["OPENECR_CREATE_ON_PUSH"])
    if env.get("OPENECR_CREDENTIALS"):
        values["credentials_file"] = Path(env["OPENECR_CREDENTIALS"])
    if env.get("OPENECR_WORKERS"):
        try:
            values["workers"] = int(env["OPENECR_WORKERS"])
        except ValueError as error:
            raise ConfigError(
                f"OPENECR_WORKERS must be a whole number, not {env['OPENECR_WORKERS']!r}"
            ) from error
    if env.get("OPENECR_LOG_LEVEL"):
        values["log_level"] = env["OPENECR_LOG_LEVEL"].strip().lower()
    if env.get("OPENECR_SECRETS"):
        values["secrets_file"] = Path(env["OPENECR_SECRETS"])
    if env.get("OPENECR_PULL_THROUGH_TTL"):
        try:
            values["pull_through_ttl"] = float(env["OPENECR_PULL_THROUGH_TTL"])
        except ValueError as error:
            raise ConfigError(
                "OPENECR_PULL_THROUGH_TTL must be a number of seconds, not "
                f"{env['OPENECR_PULL_THROUGH_TTL']!r}"
            ) from error
    if "OPENECR_PULL_TIMES" in env:
        values["pull_times"] = _truthy(env["OPENECR_PULL_TIMES"])
    if env.get("OPENECR_ACCESS_LOG"):
        values["access_log"] = env["OPENECR_ACCESS_LOG"].strip().lower()
    for name in ("tls_cert", "tls_key"):
        if env.get(f"OPENECR_{name.upper()}"):
            values[name] = Path(env[f"OPENECR_{name.upper()}"])
    if env.get("OPENECR_LIFECYCLE_INTERVAL"):
        try:
            values["lifecycle_interval"] = float(env["OPENECR_LIFECYCLE_INTERVAL"])
        except ValueError as error:
            raise ConfigError(
                "OPENECR_LIFECYCLE_INTERVAL must be a number of seconds, not "
                f"{env['OPENECR_LIFECYCLE_INTERVAL']!r}"
            ) from error
    if env.get("OPENECR_REPLICATION_PEERS"):
        values["replication_peers_file"] = Path(env["OPENECR_REPLICATION_PEERS"])
    if env.get("OPENECR_REPLICATION_LEASE"):
        try:
            values["replication_lease"] = float(env["OPENECR_REPLICATION_LEASE"])
        except ValueError as error:
            raise ConfigError(
                "OPENECR_REPLICATION_LEASE must be a number of seconds, not "
                f"{env['OPENECR_REPLICATION_LEASE']!r}"
            ) from error
    if env.get("OPENECR_REPLICATION_CHUNK"):
        try:
            values["replication_chunk"] = int(env["OPENECR_REPLICATION_CHUNK"])
        except ValueError as error:
            raise ConfigError(
                "OPENECR_REPLICATION_CHUNK must be a whole number of bytes, not "
                f"{env['OPENECR_REPLICATION_CHUNK']!r}"
            ) from error
    if env.get("OPENECR_VULNERABILITY_DB"):
        values["vulnerability_db"] = Path(env["OPENECR_VULNERABILITY_DB"])
    for name, field_name in (
        ("OPENECR_GC_INTERVAL", "gc_interval"),
        ("OPENECR_GC_GRACE", "gc_grace"),
        ("OPENECR_UPLOAD_EXPIRY", "upload_expiry"),
    ):
        if env.get(name):
            try:
                values[field_name] = float(env[name])
            except ValueError as error:
                raise ConfigError(
                    f"{name} must be a number of seconds, not {env[name]!r}"
                ) from error
    values.update({k: v for k, v in overrides.items() if v is not None})
    if values.get("vulnerability_db") is not None:
        values["vulnerability_db"] = Path(str(values["vulnerability_db"]))
    if values.get("data_dir") is not None:
        values["data_dir"] = Path(str(values["data_dir"]))
    for name in ("tls_cert", "tls_key"):
        if values.get(name) is not None:
            values[name] = Path(str(values[name]))
    if values.get("credentials_file") is not None:
        path = Path(str(values["credentials_file"]))
        values["credentials_file"] = path
        values["credentials"] = load_credentials(path)
    if values.get("replication_peers_file") is not None:
        path = Path(str(values["replication_peers_file"]))
        values["replication_peers_file"] = path
        values["replication_peers"] = load_replication_peers(path)
    if values.get("secrets_file") is not None:
        path = Path(str(values["secrets_file"]))
        values["secrets_file"] = path
        values["secrets"] = load_secrets(path)
    return Config(**values).validate()  # type: ignore[arg-type]


def log_to_stderr(log_level: str) -> None:
    """Send this process's log records to stderr at ``log_level`` (one of LOG_LEVELS)."""
    import logging

    level: int | str = 5 if log_level == "trace" else log_level.upper()  # uvicorn's TRACE
    logging.basicConfig(level=level, format="%(levelname)s %(name)s %(message)s")
