"""Snakemake entry: the benchmark as a Hugging Face dataset folder (spinebench.exports.hf)."""

from spinebench.exports.common import load_job_inputs
from spinebench.exports.hf import export_hf
from spinebench.io import run_job


def main(snakemake):
    inputs = load_job_inputs(snakemake.input)
    export_hf(
        inputs,
        snakemake.output[0],
        rows_per_file=snakemake.params.rows_per_file,
        card_template=snakemake.input.card,
        source_notes=snakemake.input.sources,
    )


run_job(main, snakemake)  # noqa: F821
