"""Snakemake entry: the Hugging Face dataset folder from its split parts, with the dataset card
(spinebench.exports.hf)."""

import json
from pathlib import Path

from spinebench.exports.hf import assemble_hf
from spinebench.io import read_table, run_job


def main(snakemake):
    assemble_hf(
        read_table(snakemake.input.catalog),
        json.loads(Path(snakemake.input.manifest).read_text(encoding="utf-8")),
        snakemake.input.parts,
        snakemake.output[0],
        card_template=snakemake.input.card,
        source_notes=snakemake.input.sources,
    )


run_job(main, snakemake)  # noqa: F821
