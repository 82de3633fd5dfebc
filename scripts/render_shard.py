"""Snakemake entry point of rule render_shard: one shard of a source's standardized images -> PNG shard.

Reads the standardized table, selects this shard's rows (contiguous image_id chunk), renders them from the
source archive and writes the images table and the rows that could not be rendered. Images whose content key
is in the store (spinebench.store) are taken from it instead of being decoded again.
"""

import logging

from spinebench.io import read_table, run_job, write_table
from spinebench.render import IMAGES_SCHEMA, render_shard
from spinebench.render_cache import STORE_KIND, RenderCache
from spinebench.shards import select_shard
from spinebench.store import job_store


def main(snakemake):
    source = snakemake.wildcards.source
    table = read_table(snakemake.input.table)
    rows = select_shard(table, int(snakemake.params.shard_index), int(snakemake.params.shard_count))
    logging.info(
        "%s shard %s: %d of %d image(s)", source, snakemake.params.shard_index, len(rows), len(table)
    )
    store = job_store(snakemake.config)
    cache = RenderCache(store)
    images, rejected = render_shard(rows, snakemake.input.archive, source, snakemake.params.settings, cache)
    write_table(images, snakemake.output.images, schema=IMAGES_SCHEMA)
    write_table(rejected, snakemake.output.rejected)
    store.record_refs(snakemake.output.images, STORE_KIND, cache.tally)


run_job(main, snakemake)  # noqa: F821
