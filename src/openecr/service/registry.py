"""The bundle of use cases one registry process serves, and who is calling."""

from __future__ import annotations

from dataclasses import dataclass

from openecr.domain.iam_policy import root_arn
from openecr.domain.records import quick_init
from openecr.domain.registries import registry_key
from openecr.service.account_settings import AccountSettingsService
from openecr.service.blobs import BlobService
from openecr.service.creation_templates import CreationTemplateService
from openecr.service.images import ImageService
from openecr.service.lifecycle import LifecycleService
from openecr.service.policies import PolicyService
from openecr.service.pull_time_exclusions import PullTimeExclusionService
from openecr.service.pullthrough import PullThroughService
from openecr.service.referrers import ReferrerService
from openecr.service.replication import ReplicationService
from openecr.service.repositories import RepositoryService
from openecr.service.scanning import ScanningService
from openecr.service.signing import SigningService
from openecr.service.tokens import TokenService


@dataclass(frozen=True, slots=True)
class Settings:
    default_account: str = "123456789012"
    region: str = "us-east-1"
    # None: the host and port the client used; else a template with {account} and {region}
    registry_host: str | None = None
    # whether signatures / tokens are checked (a credentials file was given)
    authenticate: bool = False
    # whether a push over the registry API (/v2) creates a missing repository
    create_on_push: bool = False
    # whether /v2 blob GETs redirect to the blob store's presigned URLs (when it has them)
    blob_redirect: bool = False

    def registry_key(self, account: str, region: str | None = None) -> str:
        """The store's key of ``account``'s registry in ``region`` (default: ``region``)."""
        return registry_key(account, region or self.region, self.region)


@dataclass(frozen=True, slots=True)
class Registry:
    settings: Settings
    repositories: RepositoryService
    images: ImageService
    blobs: BlobService
    tokens: TokenService
    templates: CreationTemplateService
    exclusions: PullTimeExclusionService
    account_settings: AccountSettingsService
    signing: SigningService
    referrers: ReferrerService
    lifecycle: LifecycleService
    replication: ReplicationService
    scanning: ScanningService
    policies: PolicyService
    pull_through: PullThroughService

    def registry_host(self, account: str, request_host: str, region: str | None = None) -> str:
        """Where docker reaches ``account``'s registry in ``region`` (default: the default
        region), as ``repositoryUri`` and ``proxyEndpoint`` report it."""
        template = self.settings.registry_host
        if template is None:
            return request_host
        return template.format(account=account, region=region or self.settings.region)


@quick_init
@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated (or, without credentials, assumed) caller of one request."""

    account: str
    host: str  # the Host the request arrived on
    scheme: str = "http"
    region: str | None = None  # the request's region; None: the default region
    principal: str | None = None  # the access key's principal ARN; None: the account's root

    @property
    def arn(self) -> str:
        """The caller's principal ARN (policies, pull-time exclusions, error messages)."""
        return self.principal or root_arn(self.account)
