"""Snakemake entry: sample the per-disease library and assign every image its hard-negative distractors."""

import logging
import time

from spinebench.distractors import DISTRACTORS_SCHEMA, LIBRARY_SCHEMA, assign_distractors, sample_library
from spinebench.embeddings import load_embeddings
from spinebench.io import read_table, run_job, write_table


def main(snakemake):
    catalog = read_table(snakemake.input.catalog, columns=["image_id", "disease"])
    image_ids, embeddings = load_embeddings(list(snakemake.input.embeddings))
    logging.info("%d catalog images, %d embeddings of width %d", len(catalog), *embeddings.shape)
    library = sample_library(catalog, snakemake.params.library_per_disease, snakemake.params.seed)
    for disease, size in library.groupby("disease", sort=True).size().items():
        logging.info("library: %d images of %s", size, disease)
    started = time.perf_counter()
    distractors = assign_distractors(
        catalog, library, image_ids, embeddings, snakemake.params.distractor_count
    )
    logging.info("distractors assigned in %.1f s", time.perf_counter() - started)
    write_table(library, snakemake.output.library, schema=LIBRARY_SCHEMA)
    write_table(distractors, snakemake.output.distractors, schema=DISTRACTORS_SCHEMA)


run_job(main, snakemake)  # noqa: F821
