"""Wire protocols: the ECR JSON 1.1 API and (later) the OCI Distribution API."""
