"""Repository creation templates: their use cases (registry documents of kind
``creation-template``, keyed by prefix) and what a template gives a repository ECR creates."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from openecr.domain.creation_templates import (
    AppliedFor,
    CreationTemplate,
    choose_template,
    normalize_prefix,
)
from openecr.domain.iam_policy import PolicyInvalid, UnsupportedPolicy, parse_policy
from openecr.domain.model import ExclusionFilter, TagMutability
from openecr.domain.registries import account_of
from openecr.errors import (
    InvalidParameter,
    InvalidTagParameter,
    TemplateAlreadyExists,
    TemplateNotFound,
)
from openecr.ports.metadata import MetadataStore
from openecr.service.common import Clock, utcnow
from openecr.service.paging import decode_token, encode_token
from openecr.service.repositories import (
    MAX_RESOURCE_TAGS,
    NewRepository,
    check_mutability,
    check_resource_tags,
)

log = logging.getLogger("openecr.templates")

KIND = "creation-template"
REPOSITORY_POLICY = "repository-policy"  # repository document: {"text": <policy>}
LIFECYCLE_POLICY = "lifecycle-policy"  # {"lifecyclePolicyText": <text>, "registeredAt": <s>}
PAGE = 100
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::([0-9]{12}):role/[\w+=,.@/-]+")


@dataclass(frozen=True, slots=True)
class TemplateSpec:
    """What a Create or Update request sets; None leaves a member as it is (Update) or at its
    default (Create). An empty string clears a text member."""

    applied_for: Sequence[str] | None = None
    description: str | None = None
    encryption: tuple[str, str | None] | None = None  # (type, kms key)
    resource_tags: Sequence[tuple[str, str]] | None = None
    tag_mutability: TagMutability | None = None
    exclusion_filters: Sequence[ExclusionFilter] | None = None
    repository_policy: str | None = None
    lifecycle_policy: str | None = None
    custom_role_arn: str | None = None


def _check_tags(tags: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """Resource tags as CreateRepository checks them, reported as InvalidParameterException
    (the template operations have no InvalidTagParameterException)."""
    try:
        check_resource_tags(tags)
    except InvalidTagParameter as error:
        raise InvalidParameter(error.message.replace("'tags'", "'resourceTags'")) from None
    if len(dict(tags)) > MAX_RESOURCE_TAGS:
        raise InvalidParameter.constraint(
            "resourceTags", f"Member must have length less than or equal to {MAX_RESOURCE_TAGS}"
        )
    return tuple(dict(tags).items())


def _check_json_object(field: str, text: str, what: str) -> None:
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or (field == "lifecyclePolicy" and "rules" not in doc):
        raise InvalidParameter.constraint(field, f"Invalid {what} provided")


def _check_repository_policy(text: str) -> None:
    """A template's repository policy is checked as SetRepositoryPolicy checks one (it becomes
    the policy of the repositories the template creates)."""
    try:
        parse_policy(text)
    except UnsupportedPolicy as error:
        raise InvalidParameter.constraint("repositoryPolicy", str(error)) from None
    except PolicyInvalid:
        raise InvalidParameter.constraint(
            "repositoryPolicy", "Invalid repository policy provided"
        ) from None


def _text(value: str | None, current: str | None) -> str | None:
    if value is None:
        return current
    return value or None


class CreationTemplateService:
    def __init__(self, meta: MetadataStore, clock: Clock = utcnow) -> None:
        self.meta = meta
        self.clock = clock

    def _now(self) -> float:
        return float(int(self.clock().timestamp()))

    def _merge(
        self, registry_id: str, base: CreationTemplate, spec: TemplateSpec
    ) -> CreationTemplate:
        """``base`` with what ``spec`` sets, checked; raises InvalidParameter."""
        applied = base.applied_for
        if spec.applied_for is not None:
            if not spec.applied_for:
                raise InvalidParameter.constraint(
                    "appliedFor", "Member must have length greater than or equal to 1"
                )
            applied = tuple(dict.fromkeys(AppliedFor(a) for a in spec.applied_for))
        mutability, filters = base.tag_mutability, base.exclusion_filters
        if spec.tag_mutability is not None:
            mutability, filters = spec.tag_mutability, tuple(spec.exclusion_filters or ())
        elif spec.exclusion_filters is not None:
            filters = tuple(spec.exclusion_filters)
        filters = check_mutability(mutability, filters)
        encryption_type, kms_key = base.encryption_type, base.kms_key
        if spec.encryption is not None:
            encryption_type, kms_key = spec.encryption[0], spec.encryption[1] or None
            if encryption_type == "AES256" and kms_key:
                raise InvalidParameter.constraint(
                    "encryptionConfiguration", "kmsKey can only be specified with KMS encryption"
                )
        tags = base.resource_tags
        if spec.resource_tags is not None:
            tags = _check_tags(spec.resource_tags)
        repository_policy = _text(spec.repository_policy, base.repository_policy)
        if spec.repository_policy:
            _check_repository_policy(spec.repository_policy)
        lifecycle_policy = _text(spec.lifecycle_policy, base.lifecycle_policy)
        if spec.lifecycle_policy:
            _check_json_object("lifecyclePolicy", spec.lifecycle_policy, "lifecycle policy")
        role = _text(spec.custom_role_arn, base.custom_role_arn)
        if spec.custom_role_arn:
            match = _ROLE_ARN.fullmatch(spec.custom_role_arn)
            if match is None:
                raise InvalidParameter.constraint("customRoleArn", "Invalid role ARN")
            if match.group(1) != account_of(registry_id):
                raise InvalidParameter.constraint(
                    "customRoleArn", "The role must be in the same account as the registry"
                )
        return replace(
            base,
            applied_for=applied,
            description=_text(spec.description, base.description),
            encryption_type=encryption_type,
            kms_key=kms_key,
            resource_tags=tags,
            tag_mutability=mutability,
            exclusion_filters=filters,
            repository_policy=repository_policy,
            lifecycle_policy=lifecycle_policy,
            custom_role_arn=role,
        )

    def create(self, registry_id: str, prefix: str, spec: TemplateSpec) -> CreationTemplate:
        """A new template; raises TemplateAlreadyExists, InvalidParameter."""
        key = normalize_prefix(prefix)
        now = self._now()
        template = self._merge(registry_id, CreationTemplate(key, (), now, now), spec)
        with self.meta.write() as tx:
            if tx.get_document(registry_id, KIND, key) is not None:
                raise TemplateAlreadyExists(key, account_of(registry_id))
            tx.put_document(registry_id, KIND, key, template.to_json())
        return template

    def update(self, registry_id: str, prefix: str, spec: TemplateSpec) -> CreationTemplate:
        """The template with what ``spec`` sets; raises TemplateNotFound, InvalidParameter."""
        key = normalize_prefix(prefix)
        with self.meta.write() as tx:
            body = tx.get_document(registry_id, KIND, key)
            if body is None:
                raise TemplateNotFound(key, account_of(registry_id))
            current = CreationTemplate.from_json(body)
            template = replace(self._merge(registry_id, current, spec), updated_at=self._now())
            tx.put_document(registry_id, KIND, key, template.to_json())
        return template

    def delete(self, registry_id: str, prefix: str) -> CreationTemplate:
        """Delete a template and return it; raises TemplateNotFound."""
        key = normalize_prefix(prefix)
        with self.meta.write() as tx:
            body = tx.get_document(registry_id, KIND, key)
            if body is None:
                raise TemplateNotFound(key, account_of(registry_id))
            tx.delete_document(registry_id, KIND, key)
        return CreationTemplate.from_json(body)

    def describe(
        self,
        registry_id: str,
        prefixes: Sequence[str] | None,
        token: str | None,
        max_results: int | None,
    ) -> tuple[list[CreationTemplate], str | None]:
        """Templates in prefix byte order (only the named ones, unknown names skipped), a page
        of ``max_results`` (100) at a time."""
        after = decode_token(token, str, "creation-templates") if token else None
        wanted = {normalize_prefix(p) for p in prefixes} if prefixes else None
        with self.meta.read() as tx:
            found = tx.list_documents(registry_id, KIND)
        bodies = [
            body
            for key, body in found
            if (wanted is None or key in wanted) and (after is None or key > after)
        ]
        limit = max_results or PAGE
        page = [CreationTemplate.from_json(b) for b in bodies[:limit]]
        more = len(bodies) > limit
        return page, encode_token(page[-1].prefix, "creation-templates") if more else None

    def find(self, registry_id: str, name: str, scenario: AppliedFor) -> CreationTemplate | None:
        """The template that applies to repository ``name`` created by ``scenario``."""
        with self.meta.read() as tx:
            found = tx.list_documents(registry_id, KIND)
        return choose_template((CreationTemplate.from_json(b) for _, b in found), name, scenario)

    def apply(self, registry_id: str, name: str, scenario: AppliedFor) -> NewRepository:
        """The repository ECR creates as ``name`` for ``scenario``: the defaults, or what the
        matching template says (tag mutability and filters, encryption, resource tags, and its
        repository and lifecycle policies as repository documents)."""
        template = self.find(registry_id, name, scenario)
        if template is None:
            return NewRepository(name=name)
        documents: list[tuple[str, str]] = []
        if template.repository_policy:
            try:  # a template stored before policies were validated may hold an invalid one
                parse_policy(template.repository_policy)
            except PolicyInvalid:
                log.warning("template %r: its repository policy is invalid, not applied", name)
            else:
                policy = json.dumps({"text": template.repository_policy})
                documents.append((REPOSITORY_POLICY, policy))
        if template.lifecycle_policy:
            body = {"lifecyclePolicyText": template.lifecycle_policy, "registeredAt": self._now()}
            documents.append((LIFECYCLE_POLICY, json.dumps(body)))
        return NewRepository(
            name=name,
            tag_mutability=template.tag_mutability,
            exclusion_filters=template.exclusion_filters or None,
            encryption_type=template.encryption_type,
            kms_key=template.kms_key,
            tags=template.resource_tags,
            documents=tuple(documents),
        )
