"""The error hierarchy is the one mapping table: check it against botocore's model, pin what a
/v2 client gets for each error, and check each OCI code answers with a status its meaning
allows."""

from __future__ import annotations

import botocore.session
import pytest

from openecr.errors import (
    BackendUnavailable,
    InvalidParameter,
    OciCode,
    OpenEcrError,
    StorageUnavailable,
    all_error_classes,
)

# AWS-wide error types that are not shapes of the ECR model but that AWS JSON services send.
AWS_COMMON = {
    "AccessDeniedException",
    "IncompleteSignatureException",
    "InvalidSignatureException",
    "MissingAuthenticationTokenException",
    "SerializationException",
    "UnknownOperationException",
    "UnrecognizedClientException",
}


def _model_exceptions() -> set[str]:
    model = botocore.session.get_session().get_service_model("ecr")
    return {name for name in model.shape_names if model.shape_for(name).metadata.get("exception")}


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_every_error_renders_on_both_protocols(cls: type[OpenEcrError]) -> None:
    assert cls.ecr_type in _model_exceptions() | AWS_COMMON
    assert 400 <= cls.ecr_status < 600
    if cls not in (
        OpenEcrError,
        StorageUnavailable,
        BackendUnavailable,
    ):  # full or read-only storage is the server's
        assert cls.ecr_status < 500, "only the catch-all and storage failures are server faults"


def test_server_exception_is_the_catch_all() -> None:
    assert OpenEcrError.ecr_type == "ServerException"
    assert OpenEcrError.ecr_status == 500


# What each error is on both wire protocols: ECR __type and status, OCI code and status. A change
# here is a change of what clients see, so it must be deliberate (and in docs/decisions.md).
WIRE: dict[str, tuple[str, int, str, int]] = {
    "OpenEcrError": ("ServerException", 500, "UNKNOWN", 500),
    "InvalidParameter": ("InvalidParameterException", 400, "UNSUPPORTED", 400),
    "SerializationError": ("SerializationException", 400, "UNSUPPORTED", 400),
    "RequestTooLarge": ("InvalidParameterException", 413, "SIZE_INVALID", 400),
    "InvalidTagParameter": ("InvalidTagParameterException", 400, "UNSUPPORTED", 400),
    "NameInvalid": ("InvalidParameterException", 400, "NAME_INVALID", 400),
    "DigestInvalid": ("InvalidParameterException", 400, "DIGEST_INVALID", 400),
    "TagInvalid": ("InvalidParameterException", 400, "TAG_INVALID", 400),
    "RangeNotSatisfiable": ("InvalidParameterException", 400, "RANGE_INVALID", 416),
    "PaginationInvalid": ("InvalidParameterException", 400, "PAGINATION_NUMBER_INVALID", 400),
    "UnknownOperation": ("UnknownOperationException", 400, "UNSUPPORTED", 405),
    "RouteNotFound": ("UnknownOperationException", 400, "UNSUPPORTED", 404),
    "StorageUnavailable": ("ServerException", 500, "UNKNOWN", 507),
    "BackendUnavailable": ("ServerException", 500, "UNKNOWN", 503),
    "NotFound": ("ServerException", 400, "NAME_UNKNOWN", 404),
    "RepositoryNotFound": ("RepositoryNotFoundException", 400, "NAME_UNKNOWN", 404),
    "ImageNotFound": ("ImageNotFoundException", 400, "MANIFEST_UNKNOWN", 404),
    "ImageArchived": ("ImageArchivedException", 400, "MANIFEST_UNKNOWN", 404),
    "LayersNotFound": ("LayersNotFoundException", 400, "MANIFEST_BLOB_UNKNOWN", 404),
    "ReferencedImagesNotFound": (
        "ReferencedImagesNotFoundException",
        400,
        "MANIFEST_BLOB_UNKNOWN",
        404,
    ),
    "UploadNotFound": ("UploadNotFoundException", 400, "BLOB_UPLOAD_UNKNOWN", 404),
    "BlobNotFound": ("LayersNotFoundException", 400, "BLOB_UNKNOWN", 404),
    "Conflict": ("ServerException", 400, "DENIED", 403),
    "RepositoryAlreadyExists": ("RepositoryAlreadyExistsException", 400, "DENIED", 403),
    "RepositoryNotEmpty": ("RepositoryNotEmptyException", 400, "DENIED", 403),
    "ImageAlreadyExists": ("ImageAlreadyExistsException", 400, "MANIFEST_INVALID", 400),
    "ImageStorageClassUpdateNotSupported": (
        "ImageStorageClassUpdateNotSupportedException",
        400,
        "UNSUPPORTED",
        405,
    ),
    "ImageTagAlreadyExists": ("ImageTagAlreadyExistsException", 400, "TAG_INVALID", 400),
    "LayerAlreadyExists": ("LayerAlreadyExistsException", 400, "DENIED", 403),
    "ImageReferencedByIndex": ("InvalidParameterException", 400, "UNSUPPORTED", 400),
    "ImageDigestDoesNotMatch": ("ImageDigestDoesNotMatchException", 400, "DIGEST_INVALID", 400),
    "InvalidLayer": ("InvalidLayerException", 400, "DIGEST_INVALID", 400),
    "InvalidLayerPart": ("InvalidLayerPartException", 400, "RANGE_INVALID", 416),
    "LayerPartSizeMismatch": ("InvalidLayerPartException", 400, "SIZE_INVALID", 400),
    "EmptyUpload": ("EmptyUploadException", 400, "BLOB_UPLOAD_INVALID", 400),
    "ManifestInvalid": ("InvalidParameterException", 400, "MANIFEST_INVALID", 400),
    "ManifestTooLarge": ("InvalidParameterException", 400, "MANIFEST_INVALID", 413),
    "TooManyTags": ("TooManyTagsException", 400, "DENIED", 403),
    "LimitExceeded": ("LimitExceededException", 400, "TOOMANYREQUESTS", 429),
    "AuthError": ("ServerException", 400, "UNAUTHORIZED", 401),
    "UnrecognizedClient": ("UnrecognizedClientException", 400, "UNAUTHORIZED", 401),
    "InvalidSignature": ("InvalidSignatureException", 400, "UNAUTHORIZED", 401),
    "IncompleteSignature": ("IncompleteSignatureException", 400, "UNAUTHORIZED", 401),
    "MissingAuthenticationToken": ("MissingAuthenticationTokenException", 403, "UNAUTHORIZED", 401),
    "AccessDenied": ("AccessDeniedException", 400, "DENIED", 403),
    "TemplateNotFound": ("TemplateNotFoundException", 400, "NAME_UNKNOWN", 404),
    "TemplateAlreadyExists": ("TemplateAlreadyExistsException", 400, "DENIED", 403),
    "PullThroughCacheRuleNotFound": (
        "PullThroughCacheRuleNotFoundException",
        400,
        "NAME_UNKNOWN",
        404,
    ),
    "PullThroughCacheRuleAlreadyExists": (
        "PullThroughCacheRuleAlreadyExistsException",
        400,
        "DENIED",
        403,
    ),
    "UnsupportedUpstreamRegistry": (
        "UnsupportedUpstreamRegistryException",
        400,
        "UNSUPPORTED",
        400,
    ),
    "SecretNotFound": ("SecretNotFoundException", 400, "NAME_UNKNOWN", 404),
    # an upstream that failed a pull-through fetch: 502 Bad Gateway on /v2
    "UnableToGetUpstreamImage": ("UnableToGetUpstreamImageException", 400, "UNKNOWN", 502),
    "UnableToGetUpstreamLayer": ("UnableToGetUpstreamLayerException", 400, "UNKNOWN", 502),
    # a push into a pull-through cache repository: docker prints "denied: ..."
    "PushToPullThroughCache": ("InvalidParameterException", 400, "DENIED", 403),
    "ExclusionNotFound": ("ExclusionNotFoundException", 400, "NAME_UNKNOWN", 404),
    "ExclusionAlreadyExists": ("ExclusionAlreadyExistsException", 400, "DENIED", 403),
    "ValidationError": ("ValidationException", 400, "UNSUPPORTED", 400),
    "SigningConfigurationNotFound": (
        "SigningConfigurationNotFoundException",
        400,
        "NAME_UNKNOWN",
        404,
    ),
    "LifecyclePolicyInvalid": ("InvalidParameterException", 400, "UNSUPPORTED", 400),
    "LifecyclePolicyNotFound": ("LifecyclePolicyNotFoundException", 400, "NAME_UNKNOWN", 404),
    "LifecyclePolicyPreviewInProgress": (
        "LifecyclePolicyPreviewInProgressException",
        400,
        "DENIED",
        403,
    ),
    "LifecyclePolicyPreviewNotFound": (
        "LifecyclePolicyPreviewNotFoundException",
        400,
        "NAME_UNKNOWN",
        404,
    ),
    "ScanNotFound": ("ScanNotFoundException", 400, "NAME_UNKNOWN", 404),
    "UnsupportedImageType": ("UnsupportedImageTypeException", 400, "UNSUPPORTED", 400),
    "RepositoryPolicyNotFound": ("RepositoryPolicyNotFoundException", 400, "NAME_UNKNOWN", 404),
    "RegistryPolicyNotFound": ("RegistryPolicyNotFoundException", 400, "NAME_UNKNOWN", 404),
    "PolicyTextInvalid": ("InvalidParameterException", 400, "UNSUPPORTED", 400),
}

# The statuses the OCI distribution spec (and docker/distribution, for its extra codes) pairs
# with each code: unknown things are 404, invalid input 400 (an oversized manifest 413), an
# unsupported operation 405 (404 for a path no endpoint has, 400 for invalid parameters).
OCI_STATUSES: dict[OciCode, set[int]] = {
    OciCode.BLOB_UNKNOWN: {404},
    OciCode.BLOB_UPLOAD_INVALID: {400},
    OciCode.BLOB_UPLOAD_UNKNOWN: {404},
    OciCode.DIGEST_INVALID: {400},
    OciCode.MANIFEST_BLOB_UNKNOWN: {404},
    OciCode.MANIFEST_INVALID: {400, 413},
    OciCode.MANIFEST_UNKNOWN: {404},
    OciCode.NAME_INVALID: {400},
    OciCode.NAME_UNKNOWN: {404},
    OciCode.SIZE_INVALID: {400},
    OciCode.TAG_INVALID: {400},
    OciCode.UNAUTHORIZED: {401},
    OciCode.DENIED: {403},
    OciCode.UNSUPPORTED: {400, 404, 405},
    OciCode.TOOMANYREQUESTS: {429},
    OciCode.RANGE_INVALID: {416},
    OciCode.PAGINATION_NUMBER_INVALID: {400},
    # 502: a pull-through upstream failed; 503: the database or blob store is unreachable;
    # 507: storage full or read-only
    OciCode.UNKNOWN: {500, 502, 503, 507},
}


def test_wire_table_covers_every_error() -> None:
    assert set(WIRE) == {cls.__name__ for cls in all_error_classes()}
    assert set(OCI_STATUSES) == set(OciCode)


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_each_error_on_the_wire(cls: type[OpenEcrError]) -> None:
    ecr_type, ecr_status, oci_code, oci_status = WIRE[cls.__name__]
    assert (cls.ecr_type, cls.ecr_status) == (ecr_type, ecr_status)
    assert (cls.oci_code.name, cls.oci_http_status()) == (oci_code, oci_status)
    assert cls.oci_code.status in OCI_STATUSES[cls.oci_code]
    assert cls.oci_http_status() in OCI_STATUSES[cls.oci_code]


@pytest.mark.parametrize(
    ("field", "code"),
    [
        ("repositoryName", "NAME_INVALID"),
        ("imageTag", "TAG_INVALID"),
        ("imageDigest", "DIGEST_INVALID"),
        ("layerDigest", "DIGEST_INVALID"),
        ("layerDigests", "DIGEST_INVALID"),
        ("nextToken", "UNSUPPORTED"),
        ("maxResults", "UNSUPPORTED"),
        ("imageManifestMediaType", "UNSUPPORTED"),
    ],
)
def test_a_constraint_answers_its_fields_oci_code(field: str, code: str) -> None:
    error = InvalidParameter.constraint(field, "broken")
    assert isinstance(error, InvalidParameter)
    assert error.ecr_type == "InvalidParameterException"
    assert error.message == f"Invalid parameter at '{field}' failed to satisfy constraint: 'broken'"
    assert (error.oci_code.name, error.oci_http_status()) == (code, 400)
