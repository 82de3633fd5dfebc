"""Snakemake entry: select SpineBench-Sub (quality thresholds, then balanced iterative selection)."""

import logging

from spinebench.io import read_table, run_job, write_table
from spinebench.subset import SUBSET_SCHEMA, select_subset


def main(snakemake):
    catalog = read_table(snakemake.input.catalog)
    diagnosis = read_table(snakemake.input.diagnosis)
    localization = read_table(snakemake.input.localization)
    subset = select_subset(
        catalog, diagnosis, localization, dict(snakemake.params.settings), snakemake.params.seed
    )
    for task, questions in (("diagnosis", diagnosis), ("localization", localization)):
        chosen = questions[questions["question_id"].isin(subset.loc[subset["task"] == task, "question_id"])]
        for disease, size in chosen.groupby("disease", sort=True).size().items():
            logging.info("%s subset: %d questions of %s", task, size, disease)
    write_table(subset, snakemake.output[0], schema=SUBSET_SCHEMA)


run_job(main, snakemake)  # noqa: F821
