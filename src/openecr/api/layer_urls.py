"""Where this registry serves layers for ECR's GetDownloadUrlForLayer: a path under
``/openecr/layers/`` signed with the server secret (when the blob store cannot presign a URL
of its own)."""

from __future__ import annotations

from urllib.parse import quote

from openecr.domain.digest import Digest
from openecr.service.registry import Caller
from openecr.service.tokens import TokenService

ROUTE = "/openecr/layers/{registry:str}/{name:path}/{digest:str}"


def layer_path(registry_id: str, name: str, digest: Digest) -> str:
    return f"/openecr/layers/{registry_id}/{name}/{digest}"


def signed_layer_url(
    tokens: TokenService, caller: Caller, registry_id: str, name: str, digest: Digest
) -> str:
    """An absolute URL on the host the caller used, valid for the tokens' URL lifetime."""
    path = layer_path(registry_id, name, digest)
    expires, signature = tokens.sign_path(path)
    return f"{caller.scheme}://{caller.host}{quote(path)}?expires={expires}&signature={signature}"
