"""End-to-end tests: real container clients (docker with a private dockerd, podman, skopeo, the
oras Python SDK) against a real ``openecr serve`` on 127.0.0.1. ``make test`` installs the
Debian packages first; by hand: ``./scripts/install-test-deps skopeo podman docker.io
busybox-static``, then ``.venv/bin/python -m pytest tests/e2e`` (``-m "not e2e"`` skips them)."""
