"""Snakemake entry: the benchmark in the original SpineBench release's JSON layout
(spinebench.exports.spinebench_json)."""

import logging

from spinebench.exports.common import load_job_inputs
from spinebench.exports.spinebench_json import SPLIT_FILES, export_spinebench_json
from spinebench.io import run_job


def main(snakemake):
    inputs = load_job_inputs(snakemake.input)
    counts = export_spinebench_json(inputs, snakemake.output[0])
    for split, per_task in counts.items():
        folder, file_name = SPLIT_FILES[split]
        logging.info("%s/%s: %s", folder, file_name, ", ".join(f"{n} {task}" for task, n in per_task.items()))


run_job(main, snakemake)  # noqa: F821
