"""An upstream registry over HTTP (httpx): the OCI Distribution API read side, anonymous or
logged in with the registry's own scheme, as docker does it:

* a 401 with a ``Bearer realm=...,service=...,scope=...`` challenge: ask the realm for a token
  (with the username and password as Basic credentials when there are some) and retry with
  ``Authorization: Bearer <token>``; tokens are kept per scope until they expire;
* a 401 with a ``Basic`` challenge: retry with the username and password.

Redirects are followed (blob stores often answer with one); httpx drops ``Authorization`` when a
redirect leaves the registry's origin.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Iterator, Sequence

import httpx

from openecr.ports.upstream import (
    UpstreamEndpoint,
    UpstreamFailure,
    UpstreamManifest,
    UpstreamProblem,
)

TIMEOUT = httpx.Timeout(60.0, connect=5.0)
CHUNK = 1024 * 1024
MAX_MANIFEST = 4 * 1024 * 1024
_PARAM = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))')


def _problem(status: int) -> UpstreamProblem:
    if status == 404:
        return UpstreamProblem.NOT_FOUND
    if status in (401, 403):
        return UpstreamProblem.DENIED
    if status == 429:
        return UpstreamProblem.THROTTLED
    return UpstreamProblem.UNAVAILABLE


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``(scheme, parameters)`` of a ``WWW-Authenticate`` header (scheme lower-cased)."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): m.group(2) or m.group(3) or "" for m in _PARAM.finditer(rest)}
    return scheme.lower(), params


class _Blob:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        length = response.headers.get("content-length")
        self._size = int(length) if length and length.isdigit() else None

    @property
    def size(self) -> int | None:
        return self._size

    def chunks(self) -> Iterator[bytes]:
        try:
            yield from self.response.iter_bytes(CHUNK)
        except httpx.HTTPError as error:
            raise UpstreamFailure(
                UpstreamProblem.UNAVAILABLE, f"the upstream stopped sending the blob: {error}"
            ) from None
        finally:
            self.response.close()

    def close(self) -> None:
        self.response.close()


class HttpUpstream:
    """One upstream registry; thread-safe (one connection pool, tokens under a lock)."""

    def __init__(self, endpoint: UpstreamEndpoint, transport: httpx.BaseTransport | None = None):
        self.endpoint = endpoint
        self.client = httpx.Client(timeout=TIMEOUT, follow_redirects=True, transport=transport)
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}  # scope -> (token, expiry, monotonic)
        self._basic = False  # the registry asked for Basic credentials

    def close(self) -> None:
        self.client.close()

    # --- authentication ----------------------------------------------------------------------

    def _basic_header(self) -> str | None:
        if self.endpoint.username is None:
            return None
        pair = f"{self.endpoint.username}:{self.endpoint.password or ''}".encode()
        return "Basic " + base64.b64encode(pair).decode()

    def _authorization(self, scope: str) -> str | None:
        with self._lock:
            found = self._tokens.get(scope)
            if found is not None and found[1] > time.monotonic():
                return f"Bearer {found[0]}"
        return self._basic_header() if self._basic else None

    def _login(self, challenge: str, scope: str) -> None:
        """Answer a 401's challenge: fetch a token, or switch to Basic. Raises DENIED when
        there is no way to answer it."""
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            if self.endpoint.username is None:
                raise UpstreamFailure(
                    UpstreamProblem.DENIED, "the upstream requires credentials (no credentialArn)"
                )
            self._basic = True
            return
        if scheme != "bearer" or not params.get("realm"):
            raise UpstreamFailure(
                UpstreamProblem.DENIED, f"the upstream's challenge is not understood: {challenge!r}"
            )
        query = {k: v for k, v in (("service", params.get("service")),) if v}
        wanted = params.get("scope") or scope
        if wanted:
            query["scope"] = wanted
        headers = {}
        basic = self._basic_header()
        if basic is not None:
            headers["Authorization"] = basic
        try:
            answer = self.client.get(params["realm"], params=query, headers=headers)
        except httpx.HTTPError as error:
            raise UpstreamFailure(
                UpstreamProblem.UNAVAILABLE, f"the upstream's token service failed: {error}"
            ) from None
        if answer.status_code != 200:
            raise UpstreamFailure(
                _problem(answer.status_code),
                f"the upstream's token service answered {answer.status_code}",
            )
        try:
            doc = answer.json()
            token = doc.get("token") or doc.get("access_token")
            lifetime = float(doc.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError):
            token = None
            lifetime = 0.0
        if not isinstance(token, str) or not token:
            raise UpstreamFailure(
                UpstreamProblem.UNAVAILABLE, "the upstream's token service sent no token"
            )
        with self._lock:
            self._tokens[scope] = (token, time.monotonic() + max(lifetime - 5, 1))

    def _send(
        self,
        method: str,
        path: str,
        scope: str,
        headers: dict[str, str] | None = None,
        *,
        stream: bool = False,
    ) -> httpx.Response:
        """One request, logged in as the upstream asks; a non-2xx answer raises."""
        url = self.endpoint.base_url + path
        for attempt in (1, 2):
            sent = dict(headers or {})
            authorization = self._authorization(scope)
            if authorization is not None:
                sent["Authorization"] = authorization
            try:
                request = self.client.build_request(method, url, headers=sent)
                response = self.client.send(request, stream=stream)
            except httpx.HTTPError as error:
                raise UpstreamFailure(
                    UpstreamProblem.UNAVAILABLE, f"the upstream cannot be reached: {error}"
                ) from None
            if response.status_code == 401 and attempt == 1:
                challenge = response.headers.get("www-authenticate", "")
                response.close()
                self._login(challenge, scope)
                continue
            if 200 <= response.status_code < 300:
                return response
            response.close()
            raise UpstreamFailure(
                _problem(response.status_code),
                f"the upstream answered {response.status_code} to {method} {path}",
            )
        raise AssertionError("unreachable")  # pragma: no cover

    # --- the registry API ----------------------------------------------------------------------

    def check(self) -> None:
        self._send("GET", "/v2/", "").close()

    def manifest(self, repository: str, reference: str, accept: Sequence[str]) -> UpstreamManifest:
        response = self._send(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            f"repository:{repository}:pull",
            {"Accept": ", ".join(accept)},
            stream=True,
        )
        try:
            parts: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes(CHUNK):
                size += len(chunk)
                if size > MAX_MANIFEST:
                    raise UpstreamFailure(
                        UpstreamProblem.UNAVAILABLE, "the upstream's manifest is over 4 MiB"
                    )
                parts.append(chunk)
        except httpx.HTTPError as error:
            raise UpstreamFailure(
                UpstreamProblem.UNAVAILABLE, f"the upstream stopped sending a manifest: {error}"
            ) from None
        finally:
            response.close()
        media_type = response.headers.get("content-type", "").partition(";")[0].strip() or None
        return UpstreamManifest(
            b"".join(parts), media_type, response.headers.get("docker-content-digest")
        )

    def manifest_digest(self, repository: str, reference: str, accept: Sequence[str]) -> str | None:
        response = self._send(
            "HEAD",
            f"/v2/{repository}/manifests/{reference}",
            f"repository:{repository}:pull",
            {"Accept": ", ".join(accept)},
        )
        response.close()
        digest: str | None = response.headers.get("docker-content-digest")
        return digest

    def blob(self, repository: str, digest: str) -> _Blob:
        response = self._send(
            "GET", f"/v2/{repository}/blobs/{digest}", f"repository:{repository}:pull", stream=True
        )
        return _Blob(response)
