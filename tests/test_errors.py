"""The error hierarchy is the one mapping table: check it against botocore's model."""

from __future__ import annotations

import botocore.session
import pytest

from openecr.errors import OciCode, OpenEcrError, all_error_classes

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
    assert isinstance(cls.oci_code, OciCode)
    assert 400 <= cls.ecr_status < 600
    if cls is not OpenEcrError:
        assert cls.ecr_status < 500, "only the catch-all is a server fault"


def test_server_exception_is_the_catch_all() -> None:
    assert OpenEcrError.ecr_type == "ServerException"
    assert OpenEcrError.ecr_status == 500
