"""S3BlobDriver: blobs in an S3-compatible object store (AWS S3, SeaweedFS, MinIO, ...), through
botocore.

Layout under ``s3://BUCKET/PREFIX``:

* ``blobs/<algorithm>/<hex[:2]>/<hex>``: committed blobs, content-addressed and immutable;
* ``uploads/<session>/state.json``: an upload session's control object (current token, the
  writer holding the session, its parts and tail), replaced only by conditional writes
  (``If-Match`` / ``If-None-Match``), so replicas sharing a bucket agree on who writes and which
  state is current without any other coordination;
* ``uploads/<session>/p-<writer>-<n>``: its parts, each at least S3's 5 MiB multipart minimum
  (``PART_SIZE``, growing every 1,000 parts so a session stays within S3's 10,000 parts);
* ``uploads/<session>/t-<token>``: the bytes past the last whole part (under 5 MiB).

A session is readable at any time (the checking layer re-reads it when its running hash is
elsewhere). Commit happens only after the checking layer verified the digest: an S3 multipart
upload at the blob's content address made of server-side copies of the parts and the tail
(``UploadPartCopy``: no byte passes through openecr again), so the blob appears there whole,
at once, and only when it matched; then the session's objects are deleted.

Every S3 failure that is the store's state, not the request's (unreachable, throttled,
denied, bucket missing) is :class:`~openecr.errors.BackendUnavailable` naming the cause;
botocore retries what is safe to retry, with backoff (standard retry mode).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache, partial
from typing import Any, TypeVar
from urllib.parse import urlsplit

import botocore.session
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from openecr.domain.digest import Digest
from openecr.domain.model import UploadState
from openecr.errors import BackendUnavailable, BlobNotFound, InvalidLayerPart, UploadNotFound
from openecr.ports.blobs import BlobDriver, StoredObject

MiB = 1024 * 1024
PART_SIZE = 5 * MiB  # S3's minimum size of a multipart upload's parts (all but the last)
READ_CHUNK = 1 * MiB
MAX_COPY = 5 * 1024 * MiB  # the largest object S3 copies in one CopyObject
# a writer that has not renewed its hold on a session for this long is taken to be dead (its
# replica was killed mid-write): another writer (a client resuming through another replica) may
# take the session over. A writer renews its hold every WRITER_RENEW_SECONDS while bytes arrive.
WRITER_LEASE_SECONDS = 20.0
WRITER_RENEW_SECONDS = 5.0
_SESSION = re.compile(r"^[0-9a-f]{32}$")
_NOT_FOUND = {"404", "NoSuchKey", "NotFound", "NoSuchUpload"}
_CONFLICT = {"412", "PreconditionFailed", "ConditionalRequestConflict", "409"}

T = TypeVar("T")


def part_size(index: int) -> int:
    """The size of part ``index`` (0-based): 5 MiB, and 5 MiB more every 1,000 parts (10,000
    parts hold about 268 GB)."""
    return PART_SIZE * (1 + index // 1000)


@dataclass(frozen=True, slots=True)
class S3Location:
    bucket: str
    prefix: str  # "" or ending in "/"

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """``s3://BUCKET[/PREFIX]``; raises ValueError."""
        parts = urlsplit(url)
        if parts.scheme.lower() != "s3" or not parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"an S3 blob store is s3://BUCKET[/PREFIX], not {url!r}")
        prefix = parts.path.strip("/")
        return cls(parts.netloc, f"{prefix}/" if prefix else "")


@cache
def _session() -> Any:
    """One botocore session per process: its loaded service models are shared by clients."""
    return botocore.session.get_session()


def make_client(
    *, endpoint_url: str | None = None, path_style: bool = False, region: str | None = None
) -> Any:
    """A botocore S3 client from the standard AWS settings (``AWS_ENDPOINT_URL_S3`` /
    ``AWS_ENDPOINT_URL``, credentials, profiles, ``AWS_REGION``), ``endpoint_url`` and
    ``path_style`` overriding them."""
    session = _session()
    config = BotoConfig(
        retries={"mode": "standard", "max_attempts": 3},
        s3={"addressing_style": "path" if path_style else "auto"},
        max_pool_connections=64,
        connect_timeout=5,
        read_timeout=60,
        signature_version="s3v4",
    )
    return session.create_client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region or session.get_config_variable("region") or "us-east-1",
        config=config,
    )


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _unavailable(error: Exception) -> BackendUnavailable:
    if isinstance(error, ClientError):
        message = error.response.get("Error", {}).get("Message", "") or str(error)
        cause = f"{_code(error)}: {message}"
    else:
        cause = str(error)
    return BackendUnavailable(f"The blob store is unavailable: {cause}")


def _call(action: Callable[[], T]) -> T:
    """``action()``, with the store's failures as BackendUnavailable (ClientErrors the caller
    handles are caught inside ``action``)."""
    try:
        return action()
    except ClientError as error:
        raise _unavailable(error) from error
    except BotoCoreError as error:
        raise _unavailable(error) from error


def _marker_seconds(key: str) -> float:
    try:
        return float(key.rpartition("/")[2])
    except ValueError:
        return 0.0


@dataclass(slots=True)
class _Control:
    """A session's control object as read (``etag``: for the conditional write replacing it)."""

    etag: str
    token: str
    writer: str | None
    writer_at: float
    parts: list[tuple[str, int]]  # object name (in the session), size
    tail: tuple[str, int] | None

    @property
    def size(self) -> int:
        return sum(size for _, size in self.parts) + (self.tail[1] if self.tail else 0)

    def body(self) -> bytes:
        return json.dumps(
            {
                "token": self.token,
                "writer": self.writer,
                "writer_at": self.writer_at,
                "parts": self.parts,
                "tail": self.tail,
            }
        ).encode()


class S3BlobDriver:
    """A BlobDriver on one bucket (and key prefix); see the module docstring."""

    def __init__(self, location: S3Location, client: Any) -> None:
        self.location = location
        self.bucket = location.bucket
        self.client = client

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        endpoint_url: str | None = None,
        path_style: bool = False,
        region: str | None = None,
    ) -> S3BlobDriver:
        return cls(
            S3Location.parse(url),
            make_client(endpoint_url=endpoint_url, path_style=path_style, region=region),
        )

    # --- keys -------------------------------------------------------------------------------

    def blob_key(self, digest: Digest) -> str:
        algorithm, _, hexdigest = str(digest).partition(":")
        return f"{self.location.prefix}blobs/{algorithm}/{hexdigest[:2]}/{hexdigest}"

    def _session_dir(self, key: str) -> str:
        return f"{self.location.prefix}uploads/{key}/"

    # --- small object operations ---------------------------------------------------------------

    def _get_bytes(self, key: str) -> bytes | None:
        def get() -> bytes | None:
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=key)
            except ClientError as error:
                if _code(error) in _NOT_FOUND:
                    return None
                raise
            with response["Body"] as body:
                data: bytes = body.read()
            return data

        return _call(get)

    def _read_control(self, key: str) -> _Control:
        """The session's control object; raises UploadNotFound."""
        if not _SESSION.match(key):
            raise UploadNotFound(f"no upload session {key!r}")

        def get() -> tuple[bytes, str] | None:
            try:
                response = self.client.get_object(
                    Bucket=self.bucket, Key=self._session_dir(key) + "state.json"
                )
            except ClientError as error:
                if _code(error) in _NOT_FOUND:
                    return None
                raise
            with response["Body"] as body:
                return body.read(), str(response["ETag"])

        found = _call(get)
        if found is None:
            raise UploadNotFound(f"no upload session {key!r}")
        data, etag = found
        doc = json.loads(data)
        tail = doc.get("tail")
        return _Control(
            etag=etag,
            token=doc["token"],
            writer=doc.get("writer"),
            writer_at=float(doc.get("writer_at") or 0.0),
            parts=[(name, int(size)) for name, size in doc.get("parts", [])],
            tail=(tail[0], int(tail[1])) if tail else None,
        )

    def _write_control(self, key: str, control: _Control | None, new: _Control) -> bool:
        """Replace the control object ``control`` was read from by ``new`` (create it when
        ``control`` is None); False when another request replaced or removed it first.

        botocore retries a PUT whose response was lost; when the first attempt was stored, the
        retry's condition fails on our own write. So a refused write whose control object now
        holds exactly ``new`` (every new state is unique: a new token, or a writer id and time)
        succeeded."""
        condition = {"IfNoneMatch": "*"} if control is None else {"IfMatch": control.etag}
        body = new.body()

        def put() -> bool:
            try:
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=self._session_dir(key) + "state.json",
                    Body=body,
                    ContentType="application/json",
                    **condition,
                )
            except ClientError as error:
                if _code(error) in _CONFLICT or _code(error) in _NOT_FOUND:
                    return self._control_holds(key, body)
                raise
            return True

        return _call(put)

    def _control_holds(self, key: str, body: bytes) -> bool:
        """Whether the session's control object is now exactly ``body``."""
        try:
            return self._read_control(key).body() == body
        except UploadNotFound:
            return False

    def _put(self, key: str, data: bytes) -> None:
        _call(lambda: self.client.put_object(Bucket=self.bucket, Key=key, Body=data))

    def _delete_keys(self, keys: Iterable[str]) -> None:
        for key in keys:
            _call(partial(self.client.delete_object, Bucket=self.bucket, Key=key))

    def _session_objects(self, key: str) -> list[str]:
        prefix = self._session_dir(key)
        found: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")

        def collect() -> None:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                found.extend(item["Key"] for item in page.get("Contents", []))

        _call(collect)
        return found

    # --- upload sessions -------------------------------------------------------------------------

    def begin(self) -> UploadState:
        key = uuid.uuid4().hex
        token = uuid.uuid4().hex
        control = _Control("", token, None, 0.0, [], None)
        if not self._write_control(key, None, control):
            raise BackendUnavailable("The blob store refused a new upload session")
        return UploadState(key, 0, token)

    def writer(self, state: UploadState) -> S3UploadWriter:
        control = self._read_control(state.key)
        if control.token != state.token or control.size != state.size:
            raise InvalidLayerPart("The upload was changed by another request")
        if control.writer is not None and time.time() - control.writer_at < WRITER_LEASE_SECONDS:
            raise InvalidLayerPart("Another request is writing to this upload")
        writer_id = uuid.uuid4().hex
        held = _Control(
            control.etag, control.token, writer_id, time.time(), control.parts, control.tail
        )
        if not self._write_control(state.key, control, held):
            raise InvalidLayerPart("Another request is writing to this upload")
        return S3UploadWriter(self, state, writer_id, control)

    def read_upload(self, state: UploadState) -> Iterator[bytes]:
        control = self._read_control(state.key)
        return self._read_session(state.key, control, state.size)

    def _read_session(self, key: str, control: _Control, size: int) -> Iterator[bytes]:
        directory = self._session_dir(key)
        names = [name for name, _ in control.parts]
        if control.tail is not None:
            names.append(control.tail[0])
        left = size
        for name in names:
            if left <= 0:
                break
            for chunk in self._stream(directory + name, 0, None, missing=UploadNotFound):
                piece = chunk[:left]
                left -= len(piece)
                yield piece
                if left <= 0:
                    break

    def commit(self, state: UploadState, digest: Digest) -> None:
        control = self._read_control(state.key)
        if control.token != state.token or control.size != state.size:
            raise InvalidLayerPart("The upload was changed by another request")
        target = self.blob_key(digest)
        if not self.touch(digest):
            directory = self._session_dir(state.key)
            sources = [directory + name for name, _ in control.parts]
            if control.tail is not None:
                sources.append(directory + control.tail[0])
            self._assemble(target, sources)
        self._remove_session(state.key)

    def _assemble(self, target: str, sources: list[str]) -> None:
        """Make ``target`` the concatenation of ``sources`` (all but the last at least 5 MiB),
        appearing whole or not at all."""
        if not sources:
            self._put(target, b"")
            return
        if len(sources) == 1:
            source = {"Bucket": self.bucket, "Key": sources[0]}
            _call(
                lambda: self.client.copy_object(Bucket=self.bucket, Key=target, CopySource=source)
            )
            return
        upload_id: str = _call(
            lambda: self.client.create_multipart_upload(Bucket=self.bucket, Key=target)
        )["UploadId"]
        try:
            parts = []
            for number, name in enumerate(sources, start=1):
                done = _call(
                    partial(
                        self.client.upload_part_copy,
                        Bucket=self.bucket,
                        Key=target,
                        UploadId=upload_id,
                        PartNumber=number,
                        CopySource={"Bucket": self.bucket, "Key": name},
                    )
                )
                parts.append({"PartNumber": number, "ETag": done["CopyPartResult"]["ETag"]})
            _call(
                lambda: self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=target,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
            )
        except BaseException:
            # (else the bucket's lifecycle rules reap abandoned multipart uploads)
            with contextlib.suppress(ClientError, BotoCoreError):
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=target, UploadId=upload_id
                )
            raise

    def _remove_session(self, key: str) -> None:
        objects = self._session_objects(key)
        control = self._session_dir(key) + "state.json"
        # the control object last: while it exists the session is visible as one
        self._delete_keys([k for k in objects if k != control])
        self._delete_keys([control])

    def abort(self, state: UploadState) -> None:
        if _SESSION.match(state.key):
            self._remove_session(state.key)

    def list_uploads(self) -> Iterator[StoredObject]:
        prefix = f"{self.location.prefix}uploads/"
        sessions: dict[str, tuple[int, float]] = {}
        for item in self._list(prefix):
            key = item["Key"][len(prefix) :].partition("/")[0]
            size, modified = sessions.get(key, (0, 0.0))
            name = item["Key"].rpartition("/")[2]
            sessions[key] = (
                size + (0 if name == "state.json" else int(item["Size"])),
                max(modified, item["LastModified"].timestamp()),
            )
        for key, (size, modified) in sorted(sessions.items()):
            yield StoredObject(key, size, modified)

    def discard_upload(self, key: str) -> None:
        if _SESSION.match(key):
            self._remove_session(key)

    def _list(self, prefix: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        paginator = self.client.get_paginator("list_objects_v2")

        def collect() -> None:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                found.extend(page.get("Contents", []))

        _call(collect)
        return found

    # --- committed blobs ---------------------------------------------------------------------

    def put(self, digest: Digest, data: bytes) -> None:
        if not self.touch(digest):
            self._put(self.blob_key(digest), data)

    # Modification times: S3 cannot change an object's LastModified in place, so a refresh
    # (``touch``, a commit or put of a blob already stored) puts an empty marker object
    # ``touched/<algorithm>/<hex>/<seconds>``; a blob's modification time is the later of the two.
    # ``delete`` with ``older_than`` sets the blob aside (a server-side copy), deletes it, and
    # puts it back when a marker says it was refreshed meanwhile.

    def _marker_prefix(self, digest: Digest) -> str:
        algorithm, _, hexdigest = str(digest).partition(":")
        return f"{self.location.prefix}touched/{algorithm}/{hexdigest}/"

    def _last_modified(self, key: str) -> tuple[float, int] | None:
        def head() -> tuple[float, int] | None:
            try:
                found = self.client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as error:
                if _code(error) in _NOT_FOUND:
                    return None
                raise
            return found["LastModified"].timestamp(), int(found["ContentLength"])

        return _call(head)

    def touch(self, digest: Digest) -> bool:
        # the time is the marker's name (S3's LastModified has whole seconds only)
        prefix = self._marker_prefix(digest)
        older = [item["Key"] for item in self._list(prefix)]
        self._put(f"{prefix}{time.time():.6f}", b"")
        self._delete_keys(older)
        return self._last_modified(self.blob_key(digest)) is not None

    def _marker_time(self, digest: Digest) -> float | None:
        times = [_marker_seconds(item["Key"]) for item in self._list(self._marker_prefix(digest))]
        return max(times, default=None)

    def modified(self, digest: Digest) -> float | None:
        found = self._last_modified(self.blob_key(digest))
        if found is None:
            return None
        return max(found[0], self._marker_time(digest) or 0.0)

    def list(self) -> Iterator[StoredObject]:
        markers: dict[str, float] = {}
        prefix = f"{self.location.prefix}touched/"
        for item in self._list(prefix):
            algorithm, _, rest = item["Key"][len(prefix) :].partition("/")
            hexdigest = rest.partition("/")[0]
            name = f"{algorithm}:{hexdigest}"
            markers[name] = max(markers.get(name, 0.0), _marker_seconds(item["Key"]))
        prefix = f"{self.location.prefix}blobs/"
        for item in self._list(prefix):
            algorithm, _, rest = item["Key"][len(prefix) :].partition("/")
            digest = Digest.try_parse(f"{algorithm}:{rest.rpartition('/')[2]}")
            if digest is not None:
                modified = max(item["LastModified"].timestamp(), markers.get(str(digest), 0.0))
                yield StoredObject(str(digest), int(item["Size"]), modified)

    def stat(self, digest: Digest) -> int | None:
        found = self._last_modified(self.blob_key(digest))
        return None if found is None else found[1]

    def open(self, digest: Digest, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        return self._stream(self.blob_key(digest), offset, length, missing=BlobNotFound)

    def _stream(
        self,
        key: str,
        offset: int,
        length: int | None,
        *,
        missing: type[BlobNotFound] | type[UploadNotFound],
    ) -> Iterator[bytes]:
        """The object's bytes (``length`` from ``offset``) in chunks; the request is made
        here, so a missing object raises ``missing`` before the first chunk is asked for."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if length == 0:
            if _call(lambda: self._exists(key)):
                return iter(())
            raise missing(f"{key} is not in the blob store")
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            params["Range"] = f"bytes={offset}-{end}"

        def get() -> Any:
            try:
                return self.client.get_object(**params)
            except ClientError as error:
                if _code(error) in _NOT_FOUND:
                    raise missing(f"{key} is not in the blob store") from None
                if _code(error) in ("InvalidRange", "416") and self._exists(key):
                    return None  # from the end of the object: nothing
                raise

        response = _call(get)
        return iter(()) if response is None else self._chunks(response["Body"])

    def _exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if _code(error) in _NOT_FOUND:
                return False
            raise
        return True

    @staticmethod
    def _chunks(body: Any) -> Iterator[bytes]:
        try:
            while True:
                try:
                    chunk = body.read(READ_CHUNK)
                except BotoCoreError as error:
                    raise _unavailable(error) from error
                if not chunk:
                    return
                yield chunk
        finally:
            body.close()

    def delete(self, digest: Digest, older_than: float | None = None) -> bool:
        key = self.blob_key(digest)
        found = self._last_modified(key)
        if found is None:
            return False
        if older_than is None:
            self._delete_keys([key])
            return True
        modified = self.modified(digest)
        if modified is None or modified >= older_than:
            return False
        if found[1] > MAX_COPY:  # too large to set aside in one copy: the marker decides alone
            self._delete_keys([key])
            return True
        aside = f"{self.location.prefix}gc/{uuid.uuid4().hex}"
        _call(
            partial(
                self.client.copy_object,
                Bucket=self.bucket,
                Key=aside,
                CopySource={"Bucket": self.bucket, "Key": key},
            )
        )
        self._delete_keys([key])
        marker = self._marker_time(digest)
        refreshed = marker is not None and marker >= older_than
        if refreshed and self._last_modified(key) is None:  # put it back
            _call(
                partial(
                    self.client.copy_object,
                    Bucket=self.bucket,
                    Key=key,
                    CopySource={"Bucket": self.bucket, "Key": aside},
                )
            )
        self._delete_keys([aside])
        return not refreshed

    def local_path(self, digest: Digest) -> str | None:
        return None

    def download_url(self, digest: Digest, expires_in: int) -> str | None:
        url: str = _call(
            lambda: self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self.blob_key(digest)},
                ExpiresIn=expires_in,
            )
        )
        return url


class S3UploadWriter:
    """One write onto the end of an S3 upload session: bytes are buffered to whole parts
    (``part_size``), each put as its own object as soon as it is whole; ``finish`` stores the
    rest as the new tail and replaces the control object (conditionally: a session aborted or
    taken over meanwhile makes it fail)."""

    def __init__(
        self, driver: S3BlobDriver, state: UploadState, writer_id: str, base: _Control
    ) -> None:
        self._driver = driver
        self._state = state
        self._id = writer_id
        self._base = base
        self._parts = list(self._base.parts)
        self._written: list[str] = []  # objects this writer made
        self._buffer = bytearray()
        self._loaded = False
        self._size = state.size
        self._done = False
        self._renewed = time.monotonic()

    @property
    def size(self) -> int:
        return self._size

    def _load_tail(self) -> None:
        if not self._loaded:
            self._loaded = True
            if self._base.tail is not None:
                name = self._driver._session_dir(self._state.key) + self._base.tail[0]
                data = self._driver._get_bytes(name)
                if data is None:
                    raise UploadNotFound("The upload session is gone")
                self._buffer[:0] = data

    def write(self, chunks: Iterable[bytes]) -> None:
        self._load_tail()
        for chunk in chunks:
            self._buffer += chunk
            self._size += len(chunk)
            if time.monotonic() - self._renewed > WRITER_RENEW_SECONDS:
                self._renew()
            while len(self._buffer) >= part_size(len(self._parts)):
                size = part_size(len(self._parts))
                name = f"p-{self._id}-{len(self._parts):05d}"
                self._driver._put(
                    self._driver._session_dir(self._state.key) + name, bytes(self._buffer[:size])
                )
                self._written.append(name)
                self._parts.append((name, size))
                del self._buffer[:size]

    def _renew(self) -> None:
        """Renew this writer's hold on the session (its lease); a writer that lost it (taken
        over after it was silent for the lease, or the session ended) stops here."""
        driver, key = self._driver, self._state.key
        try:
            current = driver._read_control(key)
        except UploadNotFound:
            self.abort()
            raise
        renewed = _Control(
            current.etag, current.token, self._id, time.time(), current.parts, current.tail
        )
        if (
            current.writer != self._id
            or current.token != self._base.token
            or not driver._write_control(key, current, renewed)
        ):
            self.abort()
            raise InvalidLayerPart("Another request took this upload over")
        self._renewed = time.monotonic()

    def finish(self) -> UploadState:
        self._load_tail()
        driver, key = self._driver, self._state.key
        current = self._current()
        token = uuid.uuid4().hex
        tail: tuple[str, int] | None = None
        if self._buffer:
            name = f"t-{token}"
            driver._put(driver._session_dir(key) + name, bytes(self._buffer))
            self._written.append(name)
            tail = (name, len(self._buffer))
        new = _Control("", token, None, 0.0, self._parts, tail)
        for _ in range(5):  # a refused conditional write is checked: ours to retry, or lost
            if driver._write_control(key, current, new):
                break
            current = self._current()
        else:
            self.abort()
            raise BackendUnavailable("The blob store refused the upload's new state")
        self._done = True
        if self._base.tail is not None:  # the old tail's bytes are in the new parts and tail
            driver._delete_keys([driver._session_dir(key) + self._base.tail[0]])
        return UploadState(key, self._size, token)

    def _current(self) -> _Control:
        """The session's control object while it is still the state this write started from
        (its token unchanged); else the write is lost: aborted, UploadNotFound. A control
        object not found is read again before the session is taken to be gone (an object
        store may answer a read racing a write with the object missing)."""
        for attempt in range(3):
            try:
                current = self._driver._read_control(self._state.key)
                break
            except UploadNotFound:
                if attempt == 2:
                    self.abort()
                    raise
                time.sleep(0.05 * (attempt + 1))
        if current.token != self._base.token:
            self.abort()
            raise UploadNotFound("The upload session was ended while this part was written")
        return current

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        driver, key = self._driver, self._state.key
        driver._delete_keys(driver._session_dir(key) + name for name in self._written)
        try:
            current = driver._read_control(key)
        except UploadNotFound:
            return
        if current.writer == self._id:  # let go of the session, as it was
            released = _Control(current.etag, current.token, None, 0.0, current.parts, current.tail)
            driver._write_control(key, current, released)


def _conforms(driver: S3BlobDriver) -> BlobDriver:
    """Never called: mypy checks here that the class matches the port."""
    return driver
