"""Snakemake entry: the benchmark as VLMEvalKit multiple-choice TSVs (spinebench.exports.vlmevalkit)."""

from spinebench.exports.common import load_job_inputs
from spinebench.exports.vlmevalkit import export_vlmevalkit
from spinebench.io import run_job


def main(snakemake):
    inputs = load_job_inputs(snakemake.input)
    export_vlmevalkit(inputs, snakemake.output[0])


run_job(main, snakemake)  # noqa: F821
