"""Snakemake entry: the original SpineBench release's JSON layout from its split parts
(spinebench.exports.spinebench_json)."""

import logging

from spinebench.exports.spinebench_json import SPLIT_FILES, assemble_spinebench_json
from spinebench.io import run_job


def main(snakemake):
    counts = assemble_spinebench_json(snakemake.input.parts, snakemake.output[0])
    for split, per_task in counts.items():
        folder, file_name = SPLIT_FILES[split]
        logging.info("%s/%s: %s", folder, file_name, ", ".join(f"{n} {task}" for task, n in per_task.items()))


run_job(main, snakemake)  # noqa: F821
