"""The one exception hierarchy of openecr.

Every error the core can raise is an :class:`OpenEcrError`. Each class carries, as data, how it
renders on both wire protocols, so each API maps errors in exactly one place:

* ``ecr_type`` / ``ecr_status``: the ECR JSON 1.1 ``__type`` and HTTP status;
* ``oci_code``: the OCI Distribution error code (its HTTP status comes from :class:`OciCode`,
  unless the class sets ``oci_status``: the spec asks 413 for an oversized manifest, for one).

Tree (indentation is inheritance)::

    OpenEcrError                      ServerException / UNKNOWN
      StorageUnavailable              ServerException / UNKNOWN (507)
      BackendUnavailable              ServerException / UNKNOWN (503)
      InvalidParameter                InvalidParameterException / UNSUPPORTED (400)
        SerializationError            SerializationException
        RequestTooLarge               (413) / SIZE_INVALID
        InvalidTagParameter           InvalidTagParameterException
        NameInvalid                   InvalidParameterException / NAME_INVALID
        DigestInvalid                 InvalidParameterException / DIGEST_INVALID
        TagInvalid                    InvalidParameterException / TAG_INVALID
        RangeNotSatisfiable           InvalidParameterException / RANGE_INVALID
        PaginationInvalid             InvalidParameterException / PAGINATION_NUMBER_INVALID
        PushToPullThroughCache        InvalidParameterException / DENIED (403)
      UnknownOperation                UnknownOperationException / UNSUPPORTED
        RouteNotFound                 UnknownOperationException / UNSUPPORTED (404)
      NotFound
        RepositoryNotFound            RepositoryNotFoundException / NAME_UNKNOWN
        ImageNotFound                 ImageNotFoundException / MANIFEST_UNKNOWN
        LayersNotFound                LayersNotFoundException / MANIFEST_BLOB_UNKNOWN
        ReferencedImagesNotFound      ReferencedImagesNotFoundException / MANIFEST_BLOB_UNKNOWN
        UploadNotFound                UploadNotFoundException / BLOB_UPLOAD_UNKNOWN
        BlobNotFound                  LayersNotFoundException / BLOB_UNKNOWN
      Conflict
        RepositoryAlreadyExists       RepositoryAlreadyExistsException
        RepositoryNotEmpty            RepositoryNotEmptyException
        ImageAlreadyExists            ImageAlreadyExistsException
        ImageTagAlreadyExists         ImageTagAlreadyExistsException / TAG_INVALID
        LayerAlreadyExists            LayerAlreadyExistsException
        ImageReferencedByIndex        InvalidParameterException / UNSUPPORTED (400)
      ImageDigestDoesNotMatch         ImageDigestDoesNotMatchException / DIGEST_INVALID
      InvalidLayer                    InvalidLayerException / DIGEST_INVALID
      InvalidLayerPart                InvalidLayerPartException / RANGE_INVALID
        LayerPartSizeMismatch         InvalidLayerPartException / SIZE_INVALID
      EmptyUpload                     EmptyUploadException / BLOB_UPLOAD_INVALID
      ManifestInvalid                 InvalidParameterException / MANIFEST_INVALID
        ManifestTooLarge              InvalidParameterException / MANIFEST_INVALID (413)
      TooManyTags                     TooManyTagsException
      LimitExceeded                   LimitExceededException / TOOMANYREQUESTS
      AuthError
        UnrecognizedClient            UnrecognizedClientException / UNAUTHORIZED
        InvalidSignature              InvalidSignatureException / UNAUTHORIZED
        IncompleteSignature           IncompleteSignatureException / UNAUTHORIZED
        MissingAuthenticationToken    MissingAuthenticationTokenException / UNAUTHORIZED
        AccessDenied                  AccessDeniedException / DENIED
      NotFound, Conflict (control plane, continued)
        TemplateNotFound              TemplateNotFoundException / NAME_UNKNOWN (404)
        TemplateAlreadyExists         TemplateAlreadyExistsException / DENIED (403)
        ExclusionNotFound             ExclusionNotFoundException / NAME_UNKNOWN (404)
        ExclusionAlreadyExists        ExclusionAlreadyExistsException / DENIED (403)
      ValidationError                 ValidationException / UNSUPPORTED (400)
      SigningConfigurationNotFound    SigningConfigurationNotFoundException / NAME_UNKNOWN (404)
    (lifecycle policies)
      InvalidParameter > LifecyclePolicyInvalid        InvalidParameterException / UNSUPPORTED
      NotFound > LifecyclePolicyNotFound               LifecyclePolicyNotFoundException
      NotFound > LifecyclePolicyPreviewNotFound        LifecyclePolicyPreviewNotFoundException
    (image scanning)
      NotFound > ScanNotFound                          ScanNotFoundException / NAME_UNKNOWN (404)
      UnsupportedImageType                             UnsupportedImageTypeException / UNSUPPORTED
"""

from __future__ import annotations

from enum import Enum
from typing import ClassVar


class OciCode(Enum):
    """OCI Distribution error codes with their default message and HTTP status."""

    BLOB_UNKNOWN = ("blob unknown to registry", 404)
    BLOB_UPLOAD_INVALID = ("blob upload invalid", 400)
    BLOB_UPLOAD_UNKNOWN = ("blob upload unknown to registry", 404)
    DIGEST_INVALID = ("provided digest did not match uploaded content", 400)
    MANIFEST_BLOB_UNKNOWN = ("manifest references a manifest or blob unknown to registry", 404)
    MANIFEST_INVALID = ("manifest invalid", 400)
    MANIFEST_UNKNOWN = ("manifest unknown", 404)
    NAME_INVALID = ("invalid repository name", 400)
    NAME_UNKNOWN = ("repository name not known to registry", 404)
    SIZE_INVALID = ("provided length did not match content length", 400)
    TAG_INVALID = ("manifest tag did not match URI", 400)
    UNAUTHORIZED = ("authentication required", 401)
    DENIED = ("requested access to the resource is denied", 403)
    UNSUPPORTED = ("the operation is unsupported", 405)
    TOOMANYREQUESTS = ("too many requests", 429)
    RANGE_INVALID = ("invalid content range", 416)
    PAGINATION_NUMBER_INVALID = ("invalid number of results requested", 400)
    UNKNOWN = ("unknown error", 500)

    @property
    def message(self) -> str:
        return self.value[0]

    @property
    def status(self) -> int:
        return self.value[1]


class OpenEcrError(Exception):
    """Base of every error openecr raises on purpose."""

    ecr_type: ClassVar[str] = "ServerException"
    ecr_status: ClassVar[int] = 500
    oci_code: ClassVar[OciCode] = OciCode.UNKNOWN
    # the HTTP status on the OCI API when it is not the code's own (None: ``oci_code.status``)
    oci_status: ClassVar[int | None] = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @classmethod
    def oci_http_status(cls) -> int:
        """The status this error answers with on the OCI Distribution API."""
        return cls.oci_status or cls.oci_code.status


class InvalidParameter(OpenEcrError):
    """A request parameter that breaks a constraint. On the OCI API it is ``UNSUPPORTED`` with
    400 (the OCI distribution spec: "the operation was unsupported due to a missing
    implementation or invalid set of parameters"), unless a subclass names the parameter's own
    code: the repository name (``NAME_INVALID``), a tag (``TAG_INVALID``), a digest
    (``DIGEST_INVALID``), ..."""

    ecr_type = "InvalidParameterException"
    ecr_status = 400
    oci_code = OciCode.UNSUPPORTED
    oci_status: ClassVar[int | None] = 400  # UNSUPPORTED's own 405: a method a route lacks

    @classmethod
    def constraint(cls, field: str, constraint: str) -> InvalidParameter:
        """ECR's wording: ``Invalid parameter at '<field>' failed to satisfy constraint``.

        On ``InvalidParameter`` itself the class follows the field (see ``_BY_FIELD``), so
        that ``constraint("repositoryName", ...)`` answers ``NAME_INVALID`` on the OCI API;
        the ECR rendering is the same for all of them."""
        message = f"Invalid parameter at '{field}' failed to satisfy constraint: '{constraint}'"
        if cls is InvalidParameter:
            return _BY_FIELD.get(field, InvalidParameter)(message)
        return cls(message)


class SerializationError(InvalidParameter):
    ecr_type = "SerializationException"


class RequestTooLarge(InvalidParameter):
    ecr_status = 413
    oci_code = OciCode.SIZE_INVALID


class InvalidTagParameter(InvalidParameter):
    ecr_type = "InvalidTagParameterException"


class NameInvalid(InvalidParameter):
    """A repository name that is not one."""

    oci_code = OciCode.NAME_INVALID


class DigestInvalid(InvalidParameter):
    """A digest in a request is malformed or of an algorithm openecr cannot verify."""

    oci_code = OciCode.DIGEST_INVALID


class TagInvalid(InvalidParameter):
    """A manifest reference that is neither a digest nor a valid tag."""

    oci_code = OciCode.TAG_INVALID


class RangeNotSatisfiable(InvalidParameter):
    """A ``Range`` header that does not fit the blob."""

    oci_code = OciCode.RANGE_INVALID
    oci_status = None  # RANGE_INVALID's own 416, not InvalidParameter's 400


class PaginationInvalid(InvalidParameter):
    """A page size (``n``) that is not a non-negative integer."""

    oci_code = OciCode.PAGINATION_NUMBER_INVALID


# The subclass InvalidParameter.constraint raises for a field: its OCI code.
_BY_FIELD: dict[str, type[InvalidParameter]] = {
    "repositoryName": NameInvalid,
    "imageTag": TagInvalid,
    "imageDigest": DigestInvalid,
    "layerDigest": DigestInvalid,
    "layerDigests": DigestInvalid,
}


class UnknownOperation(OpenEcrError):
    ecr_type = "UnknownOperationException"
    ecr_status = 400
    oci_code = OciCode.UNSUPPORTED


class RouteNotFound(UnknownOperation):
    """No OCI endpoint has this path."""

    oci_status = 404


class StorageUnavailable(OpenEcrError):
    """The data directory (or the database) cannot take a write: full, or read-only. ECR has
    no such error (ServerException, naming the cause); on /v2 it is 507 Insufficient Storage."""

    oci_status = 507


class BackendUnavailable(OpenEcrError):
    """The metadata database or the object store cannot be reached (down, restarting,
    refusing connections, throttling): ECR's ServerException naming the cause; on /v2 503
    Service Unavailable, which clients retry. Nothing was stored."""

    oci_status = 503


class NotFound(OpenEcrError):
    ecr_status = 400
    oci_code = OciCode.NAME_UNKNOWN


class RepositoryNotFound(NotFound):
    ecr_type = "RepositoryNotFoundException"
    oci_code = OciCode.NAME_UNKNOWN

    def __init__(self, name: str, registry_id: str) -> None:
        super().__init__(
            f"The repository with name '{name}' does not exist in the registry "
            f"with id '{registry_id}'"
        )


class ImageNotFound(NotFound):
    ecr_type = "ImageNotFoundException"
    oci_code = OciCode.MANIFEST_UNKNOWN


class ImageArchived(NotFound):
    """An archived image (storage class ARCHIVE) cannot be pulled until it is restored; on /v2
    its manifest is unknown, as for a client it is not there."""

    ecr_type = "ImageArchivedException"
    oci_code = OciCode.MANIFEST_UNKNOWN


class LayersNotFound(NotFound):
    ecr_type = "LayersNotFoundException"
    oci_code = OciCode.MANIFEST_BLOB_UNKNOWN


class ReferencedImagesNotFound(NotFound):
    ecr_type = "ReferencedImagesNotFoundException"
    oci_code = OciCode.MANIFEST_BLOB_UNKNOWN


class UploadNotFound(NotFound):
    ecr_type = "UploadNotFoundException"
    oci_code = OciCode.BLOB_UPLOAD_UNKNOWN


class BlobNotFound(NotFound):
    ecr_type = "LayersNotFoundException"
    oci_code = OciCode.BLOB_UNKNOWN


class Conflict(OpenEcrError):
    ecr_status = 400
    oci_code = OciCode.DENIED


class RepositoryAlreadyExists(Conflict):
    ecr_type = "RepositoryAlreadyExistsException"

    def __init__(self, name: str, registry_id: str) -> None:
        super().__init__(
            f"The repository with name '{name}' already exists in the registry "
            f"with id '{registry_id}'"
        )


class RepositoryNotEmpty(Conflict):
    ecr_type = "RepositoryNotEmptyException"

    def __init__(self, name: str, registry_id: str) -> None:
        super().__init__(
            f"The repository with name '{name}' in registry with id '{registry_id}' "
            "cannot be deleted because it still contains images"
        )


class ImageStorageClassUpdateNotSupported(Conflict):
    ecr_type = "ImageStorageClassUpdateNotSupportedException"
    oci_code = OciCode.UNSUPPORTED


class ImageAlreadyExists(Conflict):
    ecr_type = "ImageAlreadyExistsException"
    oci_code = OciCode.MANIFEST_INVALID


class ImageTagAlreadyExists(Conflict):
    ecr_type = "ImageTagAlreadyExistsException"
    oci_code = OciCode.TAG_INVALID

    def __init__(self, tag: str, name: str) -> None:
        super().__init__(
            f"The image tag '{tag}' already exists in the '{name}' repository and cannot "
            "be overwritten because the repository is immutable."
        )


class LayerAlreadyExists(Conflict):
    ecr_type = "LayerAlreadyExistsException"


class ImageReferencedByIndex(Conflict):
    """A manifest that a stored index lists cannot be deleted (ECR's
    ``ImageReferencedByManifestList`` failure, raised where a single delete fails whole).
    ECR's registry answers such a DELETE with ``UNSUPPORTED`` (its user guide shows oras
    printing ``unsupported: Requested image referenced by manifest list: [sha256:...]``)."""

    ecr_type = "InvalidParameterException"
    oci_code = OciCode.UNSUPPORTED
    oci_status = 400


class ImageDigestDoesNotMatch(OpenEcrError):
    ecr_type = "ImageDigestDoesNotMatchException"
    ecr_status = 400
    oci_code = OciCode.DIGEST_INVALID


class InvalidLayer(OpenEcrError):
    ecr_type = "InvalidLayerException"
    ecr_status = 400
    oci_code = OciCode.DIGEST_INVALID


class InvalidLayerPart(OpenEcrError):
    ecr_type = "InvalidLayerPartException"
    ecr_status = 400
    oci_code = OciCode.RANGE_INVALID


class LayerPartSizeMismatch(InvalidLayerPart):
    """A part whose body is not as long as its ``Content-Range`` or ``Content-Length`` says."""

    oci_code = OciCode.SIZE_INVALID


class EmptyUpload(OpenEcrError):
    ecr_type = "EmptyUploadException"
    ecr_status = 400
    oci_code = OciCode.BLOB_UPLOAD_INVALID


class ManifestInvalid(OpenEcrError):
    ecr_type = "InvalidParameterException"
    ecr_status = 400
    oci_code = OciCode.MANIFEST_INVALID


class ManifestTooLarge(ManifestInvalid):
    """A manifest over the size limit: 413 on the OCI API, as the distribution spec asks."""

    oci_status = 413


class TooManyTags(OpenEcrError):
    ecr_type = "TooManyTagsException"
    ecr_status = 400
    oci_code = OciCode.DENIED


class LimitExceeded(OpenEcrError):
    ecr_type = "LimitExceededException"
    ecr_status = 400
    oci_code = OciCode.TOOMANYREQUESTS


class AuthError(OpenEcrError):
    ecr_status = 400
    oci_code = OciCode.UNAUTHORIZED


class UnrecognizedClient(AuthError):
    ecr_type = "UnrecognizedClientException"


class InvalidSignature(AuthError):
    ecr_type = "InvalidSignatureException"


class IncompleteSignature(AuthError):
    """A malformed ``Authorization`` header (SigV4 elements missing or unparsable)."""

    ecr_type = "IncompleteSignatureException"


class MissingAuthenticationToken(AuthError):
    ecr_type = "MissingAuthenticationTokenException"
    ecr_status = 403


class AccessDenied(AuthError):
    ecr_type = "AccessDeniedException"
    oci_code = OciCode.DENIED


class TemplateNotFound(NotFound):
    """No repository creation template has the prefix."""

    ecr_type = "TemplateNotFoundException"

    def __init__(self, prefix: str, registry_id: str) -> None:
        super().__init__(
            f"The repository creation template with prefix '{prefix}' does not exist in the "
            f"registry with id '{registry_id}'"
        )


class TemplateAlreadyExists(Conflict):
    ecr_type = "TemplateAlreadyExistsException"

    def __init__(self, prefix: str, registry_id: str) -> None:
        super().__init__(
            f"The repository creation template with prefix '{prefix}' already exists in the "
            f"registry with id '{registry_id}'"
        )


class ExclusionNotFound(NotFound):
    """The principal is not on the registry's pull time update exclusion list."""

    ecr_type = "ExclusionNotFoundException"

    def __init__(self, principal_arn: str, registry_id: str) -> None:
        super().__init__(
            f"The pull time update exclusion for principal '{principal_arn}' does not exist in "
            f"the registry with id '{registry_id}'"
        )


class ExclusionAlreadyExists(Conflict):
    ecr_type = "ExclusionAlreadyExistsException"

    def __init__(self, principal_arn: str, registry_id: str) -> None:
        super().__init__(
            f"The pull time update exclusion for principal '{principal_arn}' already exists in "
            f"the registry with id '{registry_id}'"
        )


def all_error_classes() -> list[type[OpenEcrError]]:
    """Every class of the hierarchy, base included, depth first."""
    found: list[type[OpenEcrError]] = [OpenEcrError]
    stack = list(OpenEcrError.__subclasses__())
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    return found


class ValidationError(OpenEcrError):
    """A request the model allows that names something ECR does not know (an unknown account
    setting name)."""

    ecr_type = "ValidationException"
    ecr_status = 400
    oci_code = OciCode.UNSUPPORTED
    oci_status = 400


class SigningConfigurationNotFound(NotFound):
    ecr_type = "SigningConfigurationNotFoundException"

    def __init__(self, registry_id: str) -> None:
        super().__init__(
            f"Signing configuration does not exist in the registry with id '{registry_id}'"
        )


class LifecyclePolicyInvalid(InvalidParameter):
    """A lifecycle policy ECR would refuse; ``detail`` is the validator's own words."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: "
            f"'Lifecycle policy validation failure: {detail}'"
        )
        self.detail = detail


class LifecyclePolicyNotFound(NotFound):
    ecr_type = "LifecyclePolicyNotFoundException"

    def __init__(self, name: str, registry_id: str) -> None:
        super().__init__(
            f"Lifecycle policy does not exist for the repository with name '{name}' "
            f"in the registry with id '{registry_id}'"
        )


class LifecyclePolicyPreviewInProgress(OpenEcrError):
    ecr_type = "LifecyclePolicyPreviewInProgressException"
    ecr_status = 400
    oci_code = OciCode.DENIED

    def __init__(self, name: str, registry_id: str) -> None:
        super().__init__(
            f"Lifecycle policy preview is already in progress for the repository with name "
            f"'{name}' in the registry with id '{registry_id}'"
        )


class LifecyclePolicyPreviewNotFound(NotFound):
    ecr_type = "LifecyclePolicyPreviewNotFoundException"

    def __init__(self, name: str, registry_id: str) -> None:
        super().__init__(
            f"Lifecycle policy preview does not exist for the repository with name '{name}' "
            f"in the registry with id '{registry_id}'"
        )


# --- image scanning ---------------------------------------------------------------------------


class ScanNotFound(NotFound):
    """An image that was never scanned (no made-up result stands in for a scan)."""

    ecr_type = "ScanNotFoundException"

    def __init__(self, image_id: str, name: str, registry_id: str) -> None:
        super().__init__(
            f"Image scan does not exist for the image with '{image_id}' in the repository "
            f"with name '{name}' in the registry with id '{registry_id}'"
        )


class UnsupportedImageType(OpenEcrError):
    """An image that cannot be scanned at all (a manifest list or index: scan its images)."""

    ecr_type = "UnsupportedImageTypeException"
    ecr_status = 400
    oci_code = OciCode.UNSUPPORTED
    oci_status = 400


class RepositoryPolicyNotFound(NotFound):
    ecr_type = "RepositoryPolicyNotFoundException"

    def __init__(self, name: str, registry_id: str) -> None:
        super().__init__(
            f"Repository policy does not exist for the repository with name '{name}' "
            f"in the registry with id '{registry_id}'"
        )


class RegistryPolicyNotFound(NotFound):
    ecr_type = "RegistryPolicyNotFoundException"

    def __init__(self, registry_id: str) -> None:
        super().__init__(f"Registry policy does not exist in the registry with id '{registry_id}'")


class PolicyTextInvalid(InvalidParameter):
    """A repository or registry policy ECR refuses (``what``: ``repository`` or ``registry``),
    in ECR's words; ``reason`` says why (logged and documented, not sent: ECR does not say).
    A construct openecr does not evaluate is named in the message instead."""

    def __init__(self, what: str, reason: str, *, unsupported: bool = False) -> None:
        constraint = reason if unsupported else f"Invalid {what} policy provided"
        super().__init__(
            f"Invalid parameter at 'PolicyText' failed to satisfy constraint: '{constraint}'"
        )
        self.reason = reason


# --- pull-through cache -------------------------------------------------------------------------


class PullThroughCacheRuleNotFound(NotFound):
    ecr_type = "PullThroughCacheRuleNotFoundException"

    def __init__(self, prefix: str, registry_id: str) -> None:
        super().__init__(
            f"The pull through cache rule with prefix '{prefix}' does not exist in the "
            f"registry with id '{registry_id}'"
        )


class PullThroughCacheRuleAlreadyExists(Conflict):
    ecr_type = "PullThroughCacheRuleAlreadyExistsException"

    def __init__(self, prefix: str, registry_id: str) -> None:
        super().__init__(
            f"A pull through cache rule with prefix '{prefix}' already exists in the registry "
            f"with id '{registry_id}'"
        )


class UnsupportedUpstreamRegistry(OpenEcrError):
    """An upstreamRegistryUrl that names no registry openecr can reach (not http/https)."""

    ecr_type = "UnsupportedUpstreamRegistryException"
    ecr_status = 400
    oci_code = OciCode.UNSUPPORTED
    oci_status = 400


class SecretNotFound(NotFound):
    """A credentialArn that the secrets file (``--secrets``) does not hold."""

    ecr_type = "SecretNotFoundException"

    def __init__(self, arn: str) -> None:
        super().__init__(
            f"The secret with ARN '{arn}' was not found: openecr reads pull through cache "
            "secrets from its secrets file (--secrets)"
        )


class UnableToGetUpstreamImage(OpenEcrError):
    """The upstream registry of a pull-through cache rule could not give an image that is
    not cached (unreachable, refused the credentials, throttled). On /v2: 502 Bad Gateway."""

    ecr_type = "UnableToGetUpstreamImageException"
    ecr_status = 400
    oci_code = OciCode.UNKNOWN
    oci_status = 502

    def __init__(self, message: str, failure_code: str = "UpstreamUnavailable") -> None:
        super().__init__(message)
        self.failure_code = failure_code  # BatchGetImage's per-image failure code


class PushToPullThroughCache(InvalidParameter):
    """A push (a layer upload or mount, a manifest) into a pull-through cache repository:
    only the cache writes there. ``InvalidParameterException`` on ECR's API (the one error
    every push operation of the model declares); ``DENIED`` (403) on /v2, what docker and
    podman print as "denied: ..."."""

    oci_code = OciCode.DENIED
    oci_status = None  # DENIED's own 403, not InvalidParameter's 400

    def __init__(self, name: str, registry: str) -> None:
        super().__init__(
            f"The repository with name '{name}' in the registry with id '{registry}' is a pull "
            "through cache repository: images are cached from its upstream registry and cannot "
            "be pushed to it"
        )


class UnableToGetUpstreamLayer(OpenEcrError):
    """As :class:`UnableToGetUpstreamImage`, for a layer."""

    ecr_type = "UnableToGetUpstreamLayerException"
    ecr_status = 400
    oci_code = OciCode.UNKNOWN
    oci_status = 502
