"""Snakemake entry: join the standardized tables with the rendered image shards' metadata (the catalog)."""

import logging

from spinebench.catalog import build_catalog_table, check_source_images, images_per_source
from spinebench.io import run_job, write_table


def main(snakemake):
    standardized = list(snakemake.input.standardized)
    images = list(snakemake.input.images)
    logging.info("joining %d standardized tables with %d image shards", len(standardized), len(images))
    # The Arrow table keeps the input column types exactly (e.g. list<string> levels that may all be empty).
    catalog = build_catalog_table(standardized, images)
    counts = images_per_source(standardized, catalog)
    logging.info("catalog: %d rendered images (%s)", catalog.num_rows, counts)
    # A source without images only warns; no image at all stops the build here, naming why.
    check_source_images(counts)
    write_table(catalog, snakemake.output[0])


run_job(main, snakemake)  # noqa: F821
