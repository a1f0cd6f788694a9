"""``python -m bench.growth`` (``make bench-scale``): openecr with 1,000,000 images over 1,000
repositories against a registry of 100 images, openecr alone.

Loading: by bulk insert into openecr's own metadata store (``SqlMetadataStore`` write
transactions of 10,000 images on its schema's tables, each image with the rows PutImage writes:
the image, its tag and its blob references; repositories and their blob links through the
store's API), not through HTTP:
a million PutImage calls would take hours, and what is measured is reading. The blob files are
not written (no read here fetches a layer). Then ``openecr serve`` runs on each data directory
and wrk measures, interleaved (small, big, big, small, ...), BatchGetImage with 1 tag and /v2
manifest GET by tag, each request naming a random image of a random repository; the table
gives the medians, the big registry's p50 over the small one's (target: at most 1.2), the load
time and the database's size per image. Results go to ``bench-results/growth.md`` and
``growth.json``."""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert

from bench import wrk
from bench.common import AUTHORIZATION, ECR_CONTENT_TYPE, ECR_TARGET, RESULTS, pinned_cpus
from bench.images import OCI_MANIFEST, Bulk, tag
from bench.scenarios.manifests import ACCEPT
from bench.servers import Openecr
from openecr.backends.sql import SqlMetadataStore, schema
from openecr.domain.manifest import blob_references, parse_manifest
from openecr.domain.model import BlobInfo, Repository

ACCOUNT = "123456789012"  # openecr serve's default account
BATCH = 10_000  # images per load transaction
BODIES = 200


def repository(index: int) -> str:
    return f"growth/repo-{index:04d}"


def load(data_dir: Path, images: int, repositories: int, log: bool = True) -> float:
    """``images`` bulk images spread evenly over ``repositories``; returns the seconds taken."""
    started = time.monotonic()
    data_dir.mkdir(parents=True, exist_ok=True)
    store = SqlMetadataStore(f"sqlite:///{data_dir / 'metadata.db'}")
    bulk = Bulk.make()
    blobs = [BlobInfo(f"sha256:{_sha(b)}", len(b), None) for b in bulk.blobs]
    per_repo = images // repositories
    now = time.time()
    try:
        with store.write() as tx:
            ids = []
            for r in range(repositories):
                repo = tx.create_repository(Repository(0, ACCOUNT, repository(r), _utc(now)))
                for blob in blobs:
                    tx.link_blob(repo.id, blob)
                ids.append(repo.id)
        done = 0
        work = [(r, i) for r in range(repositories) for i in range(per_repo)]
        template = bulk.manifest(0)
        parsed = parse_manifest(template, OCI_MANIFEST)  # every bulk manifest has its blobs
        shared, size = blob_references(parsed)[1:], parsed.size
        for start in range(0, len(work), BATCH):
            rows: dict[str, list[dict[str, object]]] = {"images": [], "tags": [], "links": []}
            for r, i in work[start : start + BATCH]:
                raw = _manifest(template, r * per_repo + i)
                digest = f"sha256:{_sha(raw)}"
                rows["images"].append(
                    {
                        "repository_id": ids[r],
                        "digest": digest,
                        "manifest": raw,
                        "media_type": OCI_MANIFEST,
                        "size": size,
                        "pushed_at": now,
                    }
                )
                rows["tags"].append(
                    {"repository_id": ids[r], "tag": tag(i), "digest": digest, "set_at": now}
                )
                rows["links"].extend(
                    {"repository_id": ids[r], "image": digest, "blob": blob}
                    for blob in (digest, *shared)
                )
            with store.write() as tx:  # the rows PutImage writes, one executemany per table
                tx.conn.execute(insert(schema.images), rows["images"])
                tx.conn.execute(insert(schema.tags), rows["tags"])
                tx.conn.execute(insert(schema.image_blobs), rows["links"])
            done += min(BATCH, len(work) - start)
            if log:
                elapsed = time.monotonic() - started
                print(f"  {done:,} of {len(work):,} images ({elapsed:.0f} s)", flush=True)
    finally:
        store.close()
    return time.monotonic() - started


def _manifest(template: bytes, index: int) -> bytes:
    """``Bulk.manifest(index)`` without hashing the blobs again (only the annotation differs)."""
    return template.replace(b'"bench-00000"', f'"bench-{index:05d}"'.encode())


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class Loaded(Openecr):
    """openecr serving an already loaded data directory (kept across starts)."""

    def __init__(self, data_dir: Path, workdir: Path) -> None:
        self.data_dir = data_dir
        super().__init__(workdir, pinned_cpus())

    def command(self) -> list[str]:
        command = super().command()
        command[command.index("--data-dir") + 1] = str(self.data_dir)
        return command


class Small(Loaded):
    name = "small"


class Big(Loaded):
    name = "big"


def scripts(workdir: Path, label: str, images: int, repositories: int) -> dict[str, Path]:
    rng = random.Random(f"growth-{label}")
    per_repo = images // repositories
    picks = [(rng.randrange(repositories), rng.randrange(per_repo)) for _ in range(BODIES)]
    batch = [
        wrk.Request(
            "POST",
            "/",
            json.dumps(
                {"repositoryName": repository(r), "imageIds": [{"imageTag": tag(i)}]}
            ).encode(),
        )
        for r, i in picks
    ]
    gets = [wrk.Request("GET", f"/v2/{repository(r)}/manifests/{tag(i)}") for r, i in picks]
    headers = {
        "Content-Type": ECR_CONTENT_TYPE,
        "X-Amz-Target": ECR_TARGET + "BatchGetImage",
        "Authorization": AUTHORIZATION,
    }
    return {
        "BatchGetImage, 1 id": wrk.write_script(workdir / f"{label}-batch.lua", batch, headers),
        "/v2 manifest GET by tag": wrk.write_script(
            workdir / f"{label}-get.lua", gets, {"Accept": ACCEPT}
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.growth", description=__doc__)
    parser.add_argument("--images", type=int, default=1_000_000, help="default 1,000,000")
    parser.add_argument("--repositories", type=int, default=1_000, help="default 1,000")
    parser.add_argument("--small", type=int, default=100, help="the small registry's images")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--workdir", type=Path, default=RESULTS / "growth-data")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    work = args.workdir
    sizes = {"small": (args.small, 1), "big": (args.images, args.repositories)}
    load_seconds = {}
    for label, (images, repos) in sizes.items():
        data = work / label / "data"
        if not (data / "metadata.db").exists():
            print(f"loading {images:,} images over {repos:,} repositories ({label})", flush=True)
            load_seconds[label] = load(data, images, repos, log=label == "big")
    db = work / "big" / "data" / "metadata.db"
    db_bytes = sum(p.stat().st_size for p in db.parent.glob("metadata.db*"))
    servers = {
        label: kind(work / label / "data", work / label / "server").start()
        for label, kind in (("small", Small), ("big", Big))
    }
    results: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    try:
        made = {label: scripts(work, label, *sizes[label]) for label in sizes}
        for rep in range(-1, args.reps):  # -1: warm-up
            order = list(sizes) if rep % 2 == 0 else list(sizes)[::-1]
            for case in made["small"]:
                for label in order:
                    result = wrk.run(
                        servers[label].host,
                        made[label][case],
                        connections=8,
                        duration=args.duration if rep >= 0 else 1.0,
                        cpus=pinned_cpus(),
                    )
                    if rep >= 0:
                        results.setdefault((case, label), []).append(
                            (result.rps, result.p50_ms, result.p99_ms)
                        )
    finally:
        for server in servers.values():
            server.stop()
    lines = [
        f"# openecr growth: {args.images:,} images over {args.repositories:,} repositories "
        f"vs {args.small:,} images",
        "",
        f"{args.reps} interleaved repetitions of {args.duration:g} s, wrk at 8 connections, "
        "medians; each request names a random image of a random repository.",
        "",
        "| case | metric | small | big | big / small |",
        "|---|---|---:|---:|---:|",
    ]
    report: dict[str, object] = {"images": args.images, "repositories": args.repositories}
    for case in made["small"]:
        medians = {
            label: [statistics.median(r[k] for r in results[(case, label)]) for k in range(3)]
            for label in sizes
        }
        for k, metric in enumerate(("requests/s", "p50 ms", "p99 ms")):
            small, big = medians["small"][k], medians["big"][k]
            lines.append(f"| {case} | {metric} | {small:,.2f} | {big:,.2f} | {big / small:.2f} |")
        report[case] = medians
    if "big" in load_seconds:
        seconds = load_seconds["big"]
        lines.append("")
        lines.append(
            f"Load (bulk insert into the metadata store's tables, {BATCH:,} images per "
            f"transaction): {seconds:,.0f} s, {args.images / seconds:,.0f} images/s."
        )
        report["load_seconds"] = seconds
    lines.append(
        f"Database: {db_bytes / 1e6:,.0f} MB, {db_bytes / args.images:,.0f} bytes per image "
        "(SQLite, with its WAL)."
    )
    report["db_bytes"] = db_bytes
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "growth.md").write_text(text)
    (args.out / "growth.json").write_text(json.dumps(report, indent=2))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
