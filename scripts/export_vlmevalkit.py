"""Snakemake entry: the VLMEvalKit TSVs from their split parts, under the benchmark version's dataset names
(spinebench.exports.vlmevalkit)."""

import json
from pathlib import Path

from spinebench.exports.vlmevalkit import assemble_vlmevalkit
from spinebench.io import run_job


def main(snakemake):
    manifest = json.loads(Path(snakemake.input.manifest).read_text(encoding="utf-8"))
    assemble_vlmevalkit(manifest, snakemake.input.parts, snakemake.output[0])


run_job(main, snakemake)  # noqa: F821
