"""Snakemake entry: write the release manifest and record it as built in this folder."""

import hashlib
import logging
from pathlib import Path

import yaml

from spinebench.io import json_text, run_job, write_json
from spinebench.release import build_manifest, record_build


def main(snakemake):
    pool_version = yaml.safe_load(Path(snakemake.input.pool).read_text(encoding="utf-8"))["version"]
    benchmark = snakemake.params.benchmark
    manifest = build_manifest(
        list(snakemake.input.tables),
        dict(benchmark["seeds"]),
        snakemake.params.encoder,
        pool_version,
        params=benchmark,
        files=snakemake.input.released,
    )
    for name, entry in manifest["tables"].items():
        logging.info("%s: %d rows, sha256 %s", name, entry["rows"], entry["sha256"])
    logging.info("%d other released files hashed", len(manifest.get("files", {})))
    # Recorded before it is written: a workflow run in build mode refuses to replace a manifest that is
    # not in this folder's record (spinebench.release.check_workspace).
    record_build(hashlib.sha256(json_text(manifest).encode("utf-8")).hexdigest())
    write_json(manifest, snakemake.output[0])


run_job(main, snakemake)  # noqa: F821
