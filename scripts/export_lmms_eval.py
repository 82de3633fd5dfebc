"""Snakemake entry: the lmms-eval task folder over the Hugging Face export (spinebench.exports.lmms_eval)."""

import os
from pathlib import Path

from spinebench.exports.common import load_job_inputs
from spinebench.exports.lmms_eval import export_lmms_eval
from spinebench.io import run_job


def main(snakemake):
    inputs = load_job_inputs(snakemake.input)
    export_lmms_eval(
        inputs,
        snakemake.output[0],
        hf_folder=snakemake.input.hf,
        # The task YAMLs name the Parquet files relative to the project folder (the job's working
        # directory), from where lmms-eval is run.
        hf_reference=Path(os.path.relpath(snakemake.input.hf)).as_posix(),
        templates=snakemake.input.templates,
        max_new_tokens=snakemake.params.max_new_tokens,
    )


run_job(main, snakemake)  # noqa: F821
