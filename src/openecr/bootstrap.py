"""The composition root: the only place that picks concrete backends and wires them in.

Backends are picked by the scheme of a configured URL (``--database-url``, ``--blob-store``)
from two small tables of factories, :data:`METADATA_BACKENDS` and :data:`BLOB_BACKENDS`: a new
backend is one entry there (and one fixture in ``tests/contract``)."""

from __future__ import annotations

import base64
import gc
import importlib.util
import logging
import os
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import unquote, urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openecr.api.background import Background
from openecr.api.http import Authenticator, create_app
from openecr.api.lifecycle_schedule import LifecycleSchedule
from openecr.api.observe import AccessLogHandler, Observed
from openecr.api.ui import UiApp, UiAuth
from openecr.backends.file_lock import FileLocks
from openecr.backends.filesystem import FilesystemBlobDriver
from openecr.backends.memory_blobs import MemoryBlobDriver
from openecr.backends.memory_metadata import MemoryMetadataStore
from openecr.backends.peer import PeerAddress, PeerDirectory
from openecr.backends.sql import SqlMetadataStore
from openecr.config import Config, ConfigError, from_env, log_to_stderr
from openecr.domain.registries import region_of
from openecr.ports.blobs import BlobDriver
from openecr.ports.metadata import MetadataStore
from openecr.ports.upstream import UpstreamEndpoint, UpstreamRegistry
from openecr.service.account_settings import AccountSettingsService
from openecr.service.blobs import BlobService
from openecr.service.blobstore import BlobStore
from openecr.service.browse import BrowseService
from openecr.service.conversion import ManifestConverter
from openecr.service.creation_templates import CreationTemplateService
from openecr.service.gc import GarbageCollector, GcReport
from openecr.service.health import HealthService
from openecr.service.images import ImageService
from openecr.service.lifecycle import LifecycleService, RunReport
from openecr.service.metrics import Metrics
from openecr.service.policies import PolicyService
from openecr.service.pull_time_exclusions import PullTimeExclusionService
from openecr.service.pulls import PullRecorder
from openecr.service.pullthrough import PullThroughService, Secret
from openecr.service.referrers import ReferrerService
from openecr.service.registry import Registry, Settings
from openecr.service.replication import ReplicationService
from openecr.service.repositories import RepositoryService
from openecr.service.scanning import ScanningService
from openecr.service.signing import SigningService
from openecr.service.tokens import TokenService
from openecr.service.vulnerability_db import VulnerabilityDatabase

T = TypeVar("T")

if TYPE_CHECKING:
    from openecr.service.schema1_signing import Schema1Signer


@dataclass(frozen=True, slots=True)
class Runtime:
    """A wired registry with the stores behind it (closed by ``close``)."""

    config: Config
    registry: Registry
    blobs: BlobStore
    metadata: MetadataStore
    pulls: PullRecorder
    gc: GarbageCollector
    health: HealthService
    metrics: Metrics

    def close(self) -> None:
        self.registry.replication.stop()
        self.registry.lifecycle.close()
        self.registry.scanning.close()
        self.registry.pull_through.close()
        self.pulls.close()
        self.metadata.close()


def _create_once(path: Path, make: Callable[[], bytes]) -> bytes:
    """The bytes of ``path``, written by ``make()`` (mode 0600) if the file does not exist yet;
    racing processes all read the first writer's bytes."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(make())
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.link(tmp, path)  # first writer wins; a racing process reads the winner's bytes
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_bytes()


# documents of the server itself (not of a registry: registry ids are 12 digits)
SERVER_DOCUMENTS = "openecr"


def _create_once_shared(metadata: MetadataStore, path: Path, make: Callable[[], bytes]) -> bytes:
    """The bytes of the server document ``secret/<file name>``, created once by the first
    replica (its data dir's file when it has one, so what it signed stays valid, else
    ``make()``); replicas starting together agree (the write locks the document kind)."""
    with metadata.write() as tx:
        found = tx.get_document(SERVER_DOCUMENTS, "secret", path.name)
        if found is None:
            value = path.read_bytes() if path.exists() else make()
            found = base64.b64encode(value).decode()
            tx.put_document(SERVER_DOCUMENTS, "secret", path.name, found)
    return base64.b64decode(found)


def _shares_secrets(metadata: MetadataStore | None) -> bool:
    """Whether the secrets live in the database: PostgreSQL, which replicas share."""
    return isinstance(metadata, SqlMetadataStore) and metadata.locks() is not None


def load_secret(data_dir: Path, metadata: MetadataStore | None = None) -> bytes:
    """The server secret that signs tokens and URLs: created once, kept in the database when
    replicas share it (PostgreSQL), else in the data dir."""
    path, make = data_dir / "secret.key", lambda: secrets.token_bytes(32)
    if metadata is not None and _shares_secrets(metadata):
        return _create_once_shared(metadata, path, make)
    return _create_once(path, make)


def load_schema1_key(data_dir: Path, metadata: MetadataStore | None = None) -> Schema1Signer:
    """The registry's EC P-256 key that signs schema 1 manifests converted on the fly (PEM):
    created once, kept in the database when replicas share it (PostgreSQL), else in the data
    dir, so its key id stays stable across restarts and replicas."""
    from openecr.service.schema1_signing import Schema1Signer

    path = data_dir / "schema1-signing-key.pem"
    if metadata is not None and _shares_secrets(metadata):
        pem = _create_once_shared(metadata, path, lambda: Schema1Signer.generate().to_pem())
    else:
        pem = _create_once(path, lambda: Schema1Signer.generate().to_pem())
    return Schema1Signer.from_pem(pem)


class _Schema1Key:
    """:func:`load_schema1_key` on the first call (from any thread), its signer after: the key
    and cryptography (7 MB of memory) are loaded when an old client first asks for schema 1."""

    def __init__(self, data_dir: Path, metadata: MetadataStore) -> None:
        self.data_dir = data_dir
        self.metadata = metadata
        self._lock = threading.Lock()
        self._signer: Schema1Signer | None = None

    def __call__(self) -> Schema1Signer:
        with self._lock:
            if self._signer is None:
                self._signer = load_schema1_key(self.data_dir, self.metadata)
            return self._signer


def _file_driver(url: str) -> BlobDriver:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost") or not parts.path:
        raise ConfigError(f"a file blob store is file:///absolute/path, not {url!r}")
    return FilesystemBlobDriver(Path(unquote(parts.path)))


def _postgres_store(url: str) -> MetadataStore:
    """PostgreSQL through psycopg 3 (``postgresql://`` and ``postgres://`` too)."""
    scheme, _, rest = url.partition("://")
    if scheme.partition("+")[2] not in ("", "psycopg"):
        raise ConfigError(
            f"PostgreSQL is reached through psycopg 3 (postgresql+psycopg://), not {scheme}"
        )
    if importlib.util.find_spec("psycopg") is None:
        raise ConfigError(
            "PostgreSQL needs psycopg 3, which is not installed: pip install 'openecr[postgres]'"
        )
    return SqlMetadataStore(f"postgresql+psycopg://{rest}")


# URL scheme (before any "+driver") -> factory
METADATA_BACKENDS: dict[str, Callable[[str], MetadataStore]] = {
    "sqlite": SqlMetadataStore,
    "postgresql": _postgres_store,
    "postgres": _postgres_store,
    "memory": lambda _url: MemoryMetadataStore(),
}


def _s3_driver(url: str, config: Config) -> BlobDriver:
    """``s3://BUCKET[/PREFIX]`` with the standard AWS settings and ``--s3-*`` options."""
    from openecr.backends.s3 import S3BlobDriver

    try:
        return S3BlobDriver.from_url(
            url, endpoint_url=config.s3_endpoint_url, path_style=config.s3_path_style
        )
    except ValueError as error:
        raise ConfigError(str(error)) from error


# URL scheme -> factory (of the URL and the configuration, for the store's own options)
BLOB_BACKENDS: dict[str, Callable[[str, Config], BlobDriver]] = {
    "file": lambda url, _config: _file_driver(url),
    "memory": lambda _url, _config: MemoryBlobDriver(),
    "s3": _s3_driver,
}


def _pick(kind: str, url: str, table: dict[str, Callable[[str], T]]) -> T:
    scheme = url.partition(":")[0].partition("+")[0].lower()
    factory = table.get(scheme)
    if factory is None:
        known = ", ".join(f"{name}:" for name in sorted(table))
        raise ConfigError(f"no {kind} backend serves {url!r}: use one of {known}")
    return factory(url)


def open_metadata(url: str) -> MetadataStore:
    """The metadata store a URL names; raises ConfigError for an unknown scheme."""
    return _pick("metadata", url, METADATA_BACKENDS)


def upgrade_database(url: str) -> tuple[str | None, str]:
    """Run the schema migrations of the SQL database ``url`` names (what every server does on
    start); returns (revision before, revision now). ConfigError for a store without a schema."""
    store = open_metadata(url)
    try:
        if not isinstance(store, SqlMetadataStore) or store.revisions is None:
            raise ConfigError(f"{url!r} is not an SQL database: it has no schema to migrate")
        return store.revisions
    finally:
        store.close()


def open_blobs(url: str, config: Config | None = None) -> BlobDriver:
    """The blob driver a URL names (with ``config``'s options for it); raises ConfigError
    for an unknown scheme."""
    options = config or Config()

    def bound(make: Callable[[str, Config], BlobDriver]) -> Callable[[str], BlobDriver]:
        return lambda target: make(target, options)

    table = {scheme: bound(make) for scheme, make in BLOB_BACKENDS.items()}
    return _pick("blob store", url, table)


def build_runtime(config: Config) -> Runtime:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    blobs = BlobStore(open_blobs(config.blob_store_url, config))
    metadata = open_metadata(config.metadata_url)
    settings = Settings(
        default_account=config.account_id,
        region=config.region,
        registry_host=config.registry_host,
        authenticate=bool(config.credentials),
        create_on_push=config.create_on_push,
        blob_redirect=config.redirects_blobs,
    )
    exclusions = PullTimeExclusionService(metadata)
    pulls = PullRecorder(metadata, excluded=exclusions.is_excluded)
    policies = PolicyService(metadata)
    images = ImageService(
        metadata,
        lenient_manifests=config.lenient_manifests,
        converter=ManifestConverter(metadata, blobs, _Schema1Key(config.data_dir, metadata)),
        pulls=pulls if config.pull_times else None,
    )
    repositories = RepositoryService(metadata, blobs=blobs)
    templates = CreationTemplateService(metadata)
    peers = [
        PeerAddress(p.registry_id, p.region, p.endpoint, p.access_key_id, p.secret_access_key)
        for p in config.replication_peers
    ]
    replication = ReplicationService(
        metadata,
        blobs,
        repositories,
        templates,
        # copies are written without push listeners: a replicated image is not replicated again
        ImageService(metadata, lenient_manifests=config.lenient_manifests),
        default_region=config.region,
        # cross-account copies: the destination's registry policy must allow the source
        allows=lambda key, principal, actions: policies.registry_allows(
            key, principal, actions, region=region_of(key, config.region)
        ),
        peers=PeerDirectory(peers, config.replication_chunk),
        lease_seconds=config.replication_lease,
    )
    images.on_push_write(replication.enqueue)  # queued in the push's own transaction
    images.on_push(replication.on_push)
    scanning = ScanningService(
        metadata,
        blobs,
        None if config.vulnerability_db is None else VulnerabilityDatabase(config.vulnerability_db),
        executor=ThreadPoolExecutor(1, thread_name_prefix="image-scan"),
    )
    images.on_push_write(scanning.note_push)  # reads the configuration in the push's transaction
    images.on_push(scanning.pushed)
    images.on_describe(scanning.annotate)
    blob_service = BlobService(metadata, blobs)
    pull_through = PullThroughService(
        metadata,
        blobs,
        images,
        repositories,
        templates,
        _http_upstream,
        secrets={s.arn: Secret(s.username, s.access_token) for s in config.secrets},
        ttl=config.pull_through_ttl,
    )
    images.set_source(pull_through)
    blob_service.set_source(pull_through)
    registry = Registry(
        settings=settings,
        repositories=repositories,
        images=images,
        blobs=blob_service,
        tokens=TokenService(load_secret(config.data_dir, metadata)),
        templates=templates,
        exclusions=exclusions,
        account_settings=AccountSettingsService(metadata),
        signing=SigningService(metadata),
        referrers=ReferrerService(metadata),
        lifecycle=LifecycleService(
            metadata,
            ImageService(metadata),
            executor=ThreadPoolExecutor(1, thread_name_prefix="lifecycle-preview"),
        ),
        replication=replication,
        scanning=scanning,
        policies=policies,
        pull_through=pull_through,
    )
    # one collection at a time: across replicas on PostgreSQL, else across the data dir's
    # processes
    shared = metadata.locks() if isinstance(metadata, SqlMetadataStore) else None
    collector = GarbageCollector(
        metadata,
        blobs,
        shared or FileLocks(config.data_dir),
        grace=config.gc_grace,
        upload_expiry=config.upload_expiry,
    )
    health = HealthService(metadata, blobs)
    metrics = Metrics(health.totals)
    registry.images.on_push(metrics.image_pushed)
    return Runtime(config, registry, blobs, metadata, pulls, collector, health, metrics)


def _measured_lifecycle_run(runtime: Runtime) -> Callable[[], RunReport]:
    """The scheduled lifecycle run, counted in the runtime's metrics."""

    def run() -> RunReport:
        report = runtime.registry.lifecycle.run()
        runtime.metrics.lifecycle_ran(
            report.count("expired"), report.count("transitioned"), report.count("failed")
        )
        return report

    return run


def _measured_gc_run(runtime: Runtime) -> Callable[[], GcReport | None]:
    """The scheduled garbage collection (logged), counted in the runtime's metrics."""

    def run() -> GcReport | None:
        report = runtime.gc.run_logged()
        if report is not None:
            runtime.metrics.gc_ran(report.blobs, report.bytes, report.uploads)
        return report

    return run


def _http_upstream(endpoint: UpstreamEndpoint) -> UpstreamRegistry:
    """A client of a pull-through cache's upstream. httpx (20 MB of modules with what it pulls
    in) is imported with the first one: a registry without pull-through caches never loads
    it."""
    from openecr.backends.upstream_http import HttpUpstream

    return HttpUpstream(endpoint)


def build_app(runtime: Runtime) -> ASGIApp:
    authenticate: Authenticator | None = None
    if runtime.config.credentials:
        from openecr.api.sigv4 import SigV4Authenticator

        authenticate = SigV4Authenticator(
            {
                c.access_key_id: (c.secret_access_key, c.principal_arn)
                for c in runtime.config.credentials
            },
            region=runtime.config.region,
        )
    keys = {
        c.access_key_id: (c.secret_access_key, c.account_id, c.principal_arn)
        for c in runtime.config.credentials
    }
    page = UiApp(
        runtime.registry,
        BrowseService(runtime.metadata, runtime.blobs),
        UiAuth(keys) if runtime.config.credentials else None,
    )
    app = create_app(runtime.registry, authenticate, page=page)
    replication = runtime.registry.replication
    lifespan: ASGIApp = Background(app, replication.start, replication.stop)
    lifespan = LifecycleSchedule(
        lifespan, _measured_lifecycle_run(runtime), runtime.config.lifecycle_interval
    )
    lifespan = LifecycleSchedule(
        lifespan, _measured_gc_run(runtime), runtime.config.gc_interval, "gc"
    )
    # the lifespan-only wrappers (background work, schedules) stay off every request's path
    return Observed(app, runtime.health, runtime.metrics, runtime.config.access_log, lifespan)


class _ClosesRuntime:
    """``app``, and ``runtime`` closed when the server shuts down (the ASGI lifespan protocol,
    passed through to ``app``)."""

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            return await self.app(scope, receive, send)

        async def send_after_closing(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                self.runtime.close()
            await send(message)

        await self.app(scope, receive, send_after_closing)


def freeze_heap() -> None:
    """Load what the first requests would load (the ECR service model), then hide everything
    built so far from the garbage collector (``gc.freeze``). A full collection of the startup
    heap (botocore's model, SQLAlchemy's tables, the app: ~64,000 objects) takes ~30 ms, which
    would land on some request's latency; frozen objects are never scanned again."""
    from openecr.api.ecr.operations import OPERATIONS
    from openecr.api.ecr.validation import service_model

    model = service_model()
    for name in OPERATIONS:
        _ = model.operation_model(name).input_shape  # loads and caches the shape
    gc.collect()
    gc.freeze()


def setup_logging(config: Config) -> None:
    """Log records at ``config.log_level`` to stderr, and the access log (unless off) to
    stderr too, at any log level: its lines are the message alone (they carry their time)."""
    log_to_stderr(config.log_level)
    access = logging.getLogger("openecr.access")
    if config.access_log != "off" and not access.handlers:
        access.addHandler(AccessLogHandler())
        access.setLevel(logging.INFO)
        access.propagate = False


def app_from_env() -> ASGIApp:
    """An ASGI app factory for servers that import their app by name (``openecr serve
    --workers N`` runs one per worker process): the configuration comes from the ``OPENECR_*``
    environment variables (see :mod:`openecr.config`); the runtime is closed at shutdown."""
    config = from_env()
    setup_logging(config)
    runtime = build_runtime(config)
    app = _ClosesRuntime(build_app(runtime), runtime)
    freeze_heap()
    return app
