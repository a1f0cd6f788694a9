"""The contract every MetadataStore meets, run against each backend (``conftest.STORES``)."""
