"""The ECR operations: one function per operation, from validated input to output document.

Output documents use the model's member names; timestamps are float epoch seconds, as the
AWS JSON protocol sends them. Empty optional members are omitted, as ECR does.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from openecr.api.layer_urls import signed_layer_url
from openecr.domain import mediatypes as mt
from openecr.domain import names
from openecr.domain.digest import Digest
from openecr.domain.iam_policy import denial_message
from openecr.domain.kms import aws_managed_key_arn
from openecr.domain.model import ExclusionFilter, ImageFailure, ImageId, Repository, TagMutability
from openecr.domain.records import quick_init
from openecr.domain.registries import account_of
from openecr.errors import AccessDenied, InvalidLayer, InvalidParameter, RepositoryNotFound
from openecr.service.blobs import PART_SIZE
from openecr.service.common import Permit
from openecr.service.images import image_status
from openecr.service.registry import Caller, Registry
from openecr.service.repositories import NewRepository
from openecr.service.tokens import URL_LIFETIME

DOWNLOAD_URL_SECONDS = int(URL_LIFETIME.total_seconds())

Doc = dict[str, Any]

_ARN = re.compile(r"arn:aws[a-z-]*:ecr:([a-z0-9-]+):([0-9]{12}):repository/(.+)")


@quick_init
@dataclass(frozen=True, slots=True)
class Call:
    registry: Registry
    caller: Caller
    params: Doc
    operation: str

    def registry_id(self, name: str | None = None) -> str:
        """The store's key of the registry a request names (the ``registryId`` account, default
        the caller's, in the request's region); with authentication on, the caller must be
        allowed the operation there on ``name`` (``*``: the registry) by policy."""
        target = str(self.params.get("registryId") or self.caller.account)
        key = self.registry.settings.registry_key(target, self.region)
        if self.registry.settings.authenticate:
            self.authorize(key, target, name or "*")
        return key

    @property
    def region(self) -> str:
        """The request's region (its SigV4 credential scope's), else the default region."""
        return self.caller.region or self.registry.settings.region

    def authorize(self, key: str, account: str, name: str, action: str | None = None) -> None:
        """Raises AccessDenied unless the policies of registry ``key`` (``account``'s) let the
        caller perform this operation (or ``action``) on repository ``name`` (``*``: registry
        actions)."""
        verdict = self.registry.policies.decide(
            key,
            self.caller.arn,
            f"ecr:{action or self.operation}",
            self.resource_arn(account, name),
            name,
            region=self.region,
            secure=self.caller.scheme == "https",
        )
        if not verdict.allowed:
            raise self.denied(account, name, explicit=verdict.explicit_deny, action=action)

    def permit(self, name: str) -> Permit | None:
        """The caller's right to further ECR actions on repository ``name`` (what a
        pull-through cache needs to import), decided as this operation was; None when the
        server does not authenticate."""
        if not self.registry.settings.authenticate:
            return None
        account = str(self.params.get("registryId") or self.caller.account)
        key = self.registry.settings.registry_key(account, self.region)
        return functools.partial(self.authorize, key, account, name)

    def resource_arn(self, account: str, name: str) -> str:
        return f"arn:aws:ecr:{self.region}:{account}:repository/{name}"

    def denied(
        self, account: str, name: str, *, explicit: bool = False, action: str | None = None
    ) -> AccessDenied:
        return AccessDenied(
            denial_message(
                self.caller.arn,
                f"ecr:{action or self.operation}",
                self.resource_arn(account, name),
                explicit=explicit,
            )
        )


def _ts(value: datetime) -> float:
    """Whole seconds as a float, the way ECR's timestamps read (``1.705072146E9``)."""
    return float(int(value.timestamp()))


def _repository(call: Call, repo: Repository) -> Doc:
    region = call.region
    account = account_of(repo.registry_id)
    host = call.registry.registry_host(account, call.caller.host, region)
    doc: Doc = {
        "repositoryArn": f"arn:aws:ecr:{region}:{account}:repository/{repo.name}",
        "registryId": account,
        "repositoryName": repo.name,
        "repositoryUri": f"{host}/{repo.name}",
        "createdAt": _ts(repo.created_at),
        "imageTagMutability": repo.tag_mutability.value,
        "imageScanningConfiguration": {"scanOnPush": repo.scan_on_push},
        "encryptionConfiguration": {"encryptionType": repo.encryption_type},
    }
    if repo.exclusion_filters:
        doc["imageTagMutabilityExclusionFilters"] = _filters_doc(repo.exclusion_filters)
    if repo.kms_key:
        doc["encryptionConfiguration"]["kmsKey"] = repo.kms_key
    return doc


def _filters_doc(filters: tuple[ExclusionFilter, ...]) -> list[Doc]:
    return [{"filterType": f.filter_type, "filter": f.filter} for f in filters]


def _filters(value: list[Doc] | None) -> tuple[ExclusionFilter, ...] | None:
    if value is None:
        return None
    return tuple(ExclusionFilter(f["filter"], f["filterType"]) for f in value)


def _image_id(doc: Doc) -> ImageId:
    return ImageId(doc.get("imageDigest"), doc.get("imageTag"))


def _id_doc(image_id: ImageId) -> Doc:
    doc: Doc = {}
    if image_id.digest is not None:
        doc["imageDigest"] = image_id.digest
    if image_id.tag is not None:
        doc["imageTag"] = image_id.tag
    return doc


def _failure_doc(failure: ImageFailure) -> Doc:
    return {
        "imageId": _id_doc(failure.image_id),
        "failureCode": failure.code.value,
        "failureReason": failure.reason,
    }


def _tags(value: list[Doc] | None) -> tuple[tuple[str, str], ...]:
    return tuple((t["Key"], t["Value"]) for t in value or ())


# --- repositories ------------------------------------------------------------------------------


def create_repository(call: Call) -> Doc:
    p = call.params
    name = p["repositoryName"]
    encryption = p.get("encryptionConfiguration") or {}
    spec = NewRepository(
        name=name,
        tag_mutability=TagMutability(p.get("imageTagMutability", "MUTABLE")),
        exclusion_filters=_filters(p.get("imageTagMutabilityExclusionFilters")),
        scan_on_push=bool((p.get("imageScanningConfiguration") or {}).get("scanOnPush", False)),
        encryption_type=encryption.get("encryptionType", "AES256"),
        kms_key=_kms_key(call, name, encryption),
        tags=_tags(p.get("tags")),
    )
    repo = call.registry.repositories.create(call.registry_id(name), spec)
    return {"repository": _repository(call, repo)}


def _kms_key(call: Call, name: str, encryption: Doc) -> str | None:
    """The key a repository is encrypted with: the one given, else for KMS the registry's
    AWS-managed key."""
    if encryption.get("kmsKey") or encryption.get("encryptionType") != "KMS":
        return encryption.get("kmsKey")
    return aws_managed_key_arn(account_of(call.registry_id(name)), call.region)


def describe_repositories(call: Call) -> Doc:
    p = call.params
    repos, token = call.registry.repositories.describe(
        call.registry_id(), p.get("repositoryNames"), p.get("nextToken"), p.get("maxResults")
    )
    doc: Doc = {"repositories": [_repository(call, r) for r in repos]}
    if token:
        doc["nextToken"] = token
    return doc


def delete_repository(call: Call) -> Doc:
    name = call.params["repositoryName"]
    repo = call.registry.repositories.delete(
        call.registry_id(name), name, bool(call.params.get("force", False))
    )
    return {"repository": _repository(call, repo)}


def put_image_tag_mutability(call: Call) -> Doc:
    p = call.params
    name = p["repositoryName"]
    repo = call.registry.repositories.put_tag_mutability(
        call.registry_id(name),
        name,
        TagMutability(p["imageTagMutability"]),
        _filters(p.get("imageTagMutabilityExclusionFilters")),
    )
    doc: Doc = {
        "registryId": account_of(repo.registry_id),
        "repositoryName": repo.name,
        "imageTagMutability": repo.tag_mutability.value,
    }
    if repo.exclusion_filters:
        doc["imageTagMutabilityExclusionFilters"] = _filters_doc(repo.exclusion_filters)
    return doc


def _resource(call: Call) -> tuple[str, str]:
    """The registry key and repository name of ``resourceArn``. A repository of another
    region than the request's is not found, as ECR answers (each region is its own service)."""
    arn = call.params["resourceArn"]
    match = _ARN.fullmatch(arn)
    if match is None:
        raise InvalidParameter.constraint("resourceArn", "Invalid ARN")
    region, account, name = match.groups()
    if not names.is_repository_name(name):
        raise InvalidParameter.constraint("resourceArn", "Invalid ARN")
    if call.registry.settings.authenticate:
        call.authorize(call.registry.settings.registry_key(account, call.region), account, name)
    if region != call.region:
        raise RepositoryNotFound(name, account)
    return call.registry.settings.registry_key(account, region), name


def list_tags_for_resource(call: Call) -> Doc:
    account, name = _resource(call)
    found = call.registry.repositories.list_resource_tags(account, name)
    return {"tags": [{"Key": k, "Value": v} for k, v in found]}


def tag_resource(call: Call) -> Doc:
    account, name = _resource(call)
    call.registry.repositories.tag_resource(account, name, _tags(call.params["tags"]))
    return {}


def untag_resource(call: Call) -> Doc:
    account, name = _resource(call)
    call.registry.repositories.untag_resource(account, name, call.params["tagKeys"])
    return {}


# --- images ------------------------------------------------------------------------------------


def put_image(call: Call) -> Doc:
    p = call.params
    name = p["repositoryName"]
    result = call.registry.images.store_manifest(
        call.registry_id(name),
        name,
        p["imageManifest"].encode("utf-8"),
        p.get("imageManifestMediaType"),
        p.get("imageTag"),
        p.get("imageDigest"),
        require_media_type=True,
    )
    image_id: Doc = {"imageDigest": result.image.digest}
    if result.tag is not None:
        image_id["imageTag"] = result.tag
    return {
        "image": {
            "registryId": account_of(result.repository.registry_id),
            "repositoryName": result.repository.name,
            "imageId": image_id,
            "imageManifest": result.image.manifest.decode("utf-8"),
            "imageManifestMediaType": result.image.media_type,
        }
    }


def batch_get_image(call: Call) -> Doc:
    p = call.params
    name = p["repositoryName"]
    result = call.registry.images.batch_get_image(
        call.registry_id(name),
        name,
        [_image_id(i) for i in p["imageIds"]],
        p.get("acceptedMediaTypes"),
        call.caller.arn,
        call.permit(name),
    )
    repo = result.repository
    registry_id = account_of(repo.registry_id)
    name = repo.name
    images = [
        {
            "registryId": registry_id,
            "repositoryName": name,
            "imageId": (
                {"imageDigest": r.image.digest}
                if r.tag is None
                else {"imageDigest": r.image.digest, "imageTag": r.tag}
            ),
            "imageManifest": r.manifest.decode("utf-8"),
            "imageManifestMediaType": r.media_type,
        }
        for r in result.images
    ]
    return {"images": images, "failures": [_failure_doc(f) for f in result.failures]}


def batch_delete_image(call: Call) -> Doc:
    name = call.params["repositoryName"]
    result = call.registry.images.batch_delete_image(
        call.registry_id(name), name, [_image_id(i) for i in call.params["imageIds"]]
    )
    return {
        "imageIds": [_id_doc(i) for i in result.deleted],
        "failures": [_failure_doc(f) for f in result.failures],
    }


def _tag_status(p: Doc) -> str:
    return str((p.get("filter") or {}).get("tagStatus", "ANY"))


def _image_status(p: Doc) -> str:
    return str((p.get("filter") or {}).get("imageStatus", "ANY"))


def list_images(call: Call) -> Doc:
    p = call.params
    name = p["repositoryName"]
    ids, token = call.registry.images.list_images(
        call.registry_id(name),
        name,
        _tag_status(p),
        p.get("nextToken"),
        p.get("maxResults"),
        _image_status(p),
    )
    doc: Doc = {"imageIds": [_id_doc(i) for i in ids]}
    if token:
        doc["nextToken"] = token
    return doc


def describe_images(call: Call) -> Doc:
    p = call.params
    name = p["repositoryName"]
    ids = [_image_id(i) for i in p["imageIds"]] if p.get("imageIds") else None
    repo, views, token = call.registry.images.describe_images(
        call.registry_id(name),
        name,
        ids,
        _tag_status(p),
        p.get("nextToken"),
        p.get("maxResults"),
        _image_status(p),
    )
    details = []
    registry_id = account_of(repo.registry_id)
    for view in views:
        image = view.image
        detail: Doc = {
            "registryId": registry_id,
            "repositoryName": repo.name,
            "imageDigest": image.digest,
            "imagePushedAt": _ts(image.pushed_at),
            "imageManifestMediaType": image.media_type,
        }
        if image.media_type not in mt.INDEXES:  # ECR gives lists and indexes no size
            detail["imageSizeInBytes"] = image.size
        if view.tags:
            detail["imageTags"] = list(view.tags)
        if image.artifact_media_type:
            detail["artifactMediaType"] = image.artifact_media_type
        if image.subject:
            detail["subjectManifestDigest"] = image.subject
        detail["imageStatus"] = image_status(image)
        if image.last_pulled_at is not None:
            detail["lastRecordedPullTime"] = _ts(image.last_pulled_at)
        if image.last_archived_at is not None:
            detail["lastArchivedAt"] = _ts(image.last_archived_at)
        if image.last_activated_at is not None:
            detail["lastActivatedAt"] = _ts(image.last_activated_at)
        if view.scan is not None:
            detail.update(scan_details(view.scan))
        details.append(detail)
    doc: Doc = {"imageDetails": details}
    if token:
        doc["nextToken"] = token
    return doc


def update_image_storage_class(call: Call) -> Doc:
    p = call.params
    name = p["repositoryName"]
    registry_id = call.registry_id(name)
    repo, image = call.registry.images.update_storage_class(
        registry_id, name, _image_id(p["imageId"]), p["targetStorageClass"]
    )
    image_id: Doc = {"imageDigest": image.digest}
    if p["imageId"].get("imageTag"):
        image_id["imageTag"] = p["imageId"]["imageTag"]
    return {
        "registryId": account_of(repo.registry_id),
        "repositoryName": repo.name,
        "imageId": image_id,
        "imageStatus": image_status(image),
    }


# --- layers ------------------------------------------------------------------------------------


def batch_check_layer_availability(call: Call) -> Doc:
    name = call.params["repositoryName"]
    layers, failures = call.registry.blobs.check(
        call.registry_id(name), name, call.params["layerDigests"]
    )
    layer_docs = []
    for layer in layers:
        entry: Doc = {
            "layerDigest": layer.digest,
            "layerAvailability": "AVAILABLE",
            "layerSize": layer.size,
        }
        if layer.media_type:
            entry["mediaType"] = layer.media_type
        layer_docs.append(entry)
    return {
        "layers": layer_docs,
        "failures": [
            {"layerDigest": f.digest, "failureCode": f.code, "failureReason": f.reason}
            for f in failures
        ],
    }


def initiate_layer_upload(call: Call) -> Doc:
    name = call.params["repositoryName"]
    session = call.registry.blobs.initiate(call.registry_id(name), name)
    return {"uploadId": session.id, "partSize": PART_SIZE}


def upload_layer_part(call: Call) -> Doc:
    p = call.params
    name = p["repositoryName"]
    registry_id = call.registry_id(name)
    last = call.registry.blobs.upload_part(
        registry_id, name, p["uploadId"], p["partFirstByte"], p["partLastByte"], p["layerPartBlob"]
    )
    return {
        "registryId": account_of(registry_id),
        "repositoryName": name,
        "uploadId": p["uploadId"],
        "lastByteReceived": last,
    }


def complete_layer_upload(call: Call) -> Doc:
    p = call.params
    name = p["repositoryName"]
    registry_id = call.registry_id(name)
    blobs = call.registry.blobs
    blobs.upload_size(registry_id, name, p["uploadId"])  # an unknown upload is reported first
    if len(p["layerDigests"]) != 1:
        raise InvalidParameter.constraint(
            "layerDigests", "Member must have length less than or equal to 1"
        )
    claimed = p["layerDigests"][0]
    digest = Digest.try_parse(claimed)
    if digest is None:
        raise InvalidLayer(f"The layer digest '{claimed}' is not a valid digest")
    blobs.complete(registry_id, name, p["uploadId"], digest, ecr=True)
    return {
        "registryId": account_of(registry_id),
        "repositoryName": name,
        "uploadId": p["uploadId"],
        "layerDigest": digest,
    }


def get_download_url_for_layer(call: Call) -> Doc:
    p = call.params
    name = p["repositoryName"]
    registry_id = call.registry_id(name)
    blob = call.registry.blobs.find(registry_id, name, p["layerDigest"], call.permit(name))
    digest = Digest(blob.digest)
    url = call.registry.blobs.presigned_url(digest, DOWNLOAD_URL_SECONDS)
    if url is None:  # served by this registry, at a signed path
        url = signed_layer_url(call.registry.tokens, call.caller, registry_id, name, digest)
    return {"downloadUrl": url, "layerDigest": blob.digest}


# --- auth --------------------------------------------------------------------------------------


def get_authorization_token(call: Call) -> Doc:
    accounts = call.params.get("registryIds") or [call.caller.account]
    data = []
    for account in accounts:
        if call.registry.settings.authenticate and account != call.caller.account:
            raise call.denied(account, "*")
        issued = call.registry.tokens.issue(account, call.region, call.caller.principal)
        host = call.registry.registry_host(account, call.caller.host, call.region)
        data.append(
            {
                "authorizationToken": issued.authorization_token,
                "expiresAt": _ts(issued.expires_at),
                "proxyEndpoint": f"{call.caller.scheme}://{host}",
            }
        )
    return {"authorizationData": data}


OPERATIONS: dict[str, Callable[[Call], Doc]] = {
    "BatchCheckLayerAvailability": batch_check_layer_availability,
    "BatchDeleteImage": batch_delete_image,
    "BatchGetImage": batch_get_image,
    "CompleteLayerUpload": complete_layer_upload,
    "CreateRepository": create_repository,
    "DeleteRepository": delete_repository,
    "DescribeImages": describe_images,
    "DescribeRepositories": describe_repositories,
    "GetAuthorizationToken": get_authorization_token,
    "GetDownloadUrlForLayer": get_download_url_for_layer,
    "InitiateLayerUpload": initiate_layer_upload,
    "ListImages": list_images,
    "ListTagsForResource": list_tags_for_resource,
    "PutImage": put_image,
    "PutImageTagMutability": put_image_tag_mutability,
    "UpdateImageStorageClass": update_image_storage_class,
    "TagResource": tag_resource,
    "UntagResource": untag_resource,
    "UploadLayerPart": upload_layer_part,
}

# the control plane's operations, each area in its own module (imported last: they use Call)
from openecr.api.ecr.lifecycle_operations import LIFECYCLE_OPERATIONS  # noqa: E402
from openecr.api.ecr.policy_operations import POLICY_OPERATIONS  # noqa: E402
from openecr.api.ecr.pullthrough_operations import PULLTHROUGH_OPERATIONS  # noqa: E402
from openecr.api.ecr.replication_operations import REPLICATION_OPERATIONS  # noqa: E402
from openecr.api.ecr.scanning_operations import SCANNING_OPERATIONS, scan_details  # noqa: E402
from openecr.api.ecr.settings_operations import SETTINGS_OPERATIONS  # noqa: E402
from openecr.api.ecr.templates_operations import TEMPLATES_OPERATIONS  # noqa: E402

OPERATIONS.update(TEMPLATES_OPERATIONS)
OPERATIONS.update(SETTINGS_OPERATIONS)
OPERATIONS.update(LIFECYCLE_OPERATIONS)
OPERATIONS.update(REPLICATION_OPERATIONS)
OPERATIONS.update(SCANNING_OPERATIONS)
OPERATIONS.update(POLICY_OPERATIONS)
OPERATIONS.update(PULLTHROUGH_OPERATIONS)
