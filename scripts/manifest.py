"""Snakemake entry: write the release manifest of the benchmark tables."""

import logging
from pathlib import Path

import yaml

from spinebench.io import run_job, write_json
from spinebench.release import build_manifest


def main(snakemake):
    pool_version = yaml.safe_load(Path(snakemake.input.pool).read_text(encoding="utf-8"))["version"]
    manifest = build_manifest(
        list(snakemake.input.tables), dict(snakemake.params.seeds), snakemake.params.encoder, pool_version
    )
    for name, entry in manifest["tables"].items():
        logging.info("%s: %d rows, sha256 %s", name, entry["rows"], entry["sha256"])
    write_json(manifest, snakemake.output[0])


run_job(main, snakemake)  # noqa: F821
