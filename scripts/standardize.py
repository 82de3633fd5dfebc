"""Snakemake entry point of rule standardize: one source's raw archive -> standardized + rejected tables.

Loads the raw tables into DuckDB, runs sql/standardize/{source}.sql with the source's settings bound as
named parameters, and writes both tables; the log records how many images were kept and why the others
were rejected.
"""

import logging

from spinebench.io import run_job, write_table
from spinebench.standardize import (
    REJECTED_SCHEMA,
    STANDARDIZED_SCHEMA,
    rejection_counts,
    standardize_source,
)


def main(snakemake):
    source = snakemake.wildcards.source
    settings = dict(snakemake.params.settings)
    logging.info("standardizing %s from %s with settings %s", source, snakemake.input.archive, settings)
    table, rejected = standardize_source(
        source, snakemake.input.archive, snakemake.input.sql, snakemake.input.label_map, settings
    )
    logging.info("%s: %d image(s) kept, %d row(s) rejected", source, len(table), len(rejected))
    for disease, count in table["disease"].value_counts().sort_index().items():
        logging.info("%s: kept %d %s", source, count, disease)
    for reason, count in rejection_counts(rejected).items():
        logging.info("%s: rejected %d: %s", source, count, reason)
    write_table(table, snakemake.output.table, schema=STANDARDIZED_SCHEMA)
    write_table(rejected, snakemake.output.rejected, schema=REJECTED_SCHEMA)


run_job(main, snakemake)  # noqa: F821
