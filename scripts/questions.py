"""Snakemake entry: write the diagnosis and localization questions."""

import logging

from spinebench.io import read_table, run_job, write_table
from spinebench.questions import (
    QUESTIONS_SCHEMA,
    load_pool,
    make_diagnosis_questions,
    make_localization_questions,
)


def main(snakemake):
    catalog = read_table(snakemake.input.catalog)
    distractors = read_table(snakemake.input.distractors)
    pool = load_pool(snakemake.input.pool)
    seed = snakemake.params.seed
    diagnosis = make_diagnosis_questions(catalog, distractors, pool, seed)
    localization = make_localization_questions(catalog, pool, seed)
    logging.info("%d diagnosis and %d localization questions", len(diagnosis), len(localization))
    write_table(diagnosis, snakemake.output.diagnosis, schema=QUESTIONS_SCHEMA)
    write_table(localization, snakemake.output.localization, schema=QUESTIONS_SCHEMA)


run_job(main, snakemake)  # noqa: F821
