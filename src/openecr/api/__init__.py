"""Wire protocols: the ECR JSON 1.1 API (``api.ecr``) and the OCI Distribution API under ``/v2/``
(``api.oci``), served together by ``api.http``."""
