"""Snakemake entry point of rule embed_shard: one image shard -> its open_clip embedding shard."""

import logging

from spinebench.embed import EMBEDDINGS_SCHEMA, embed_table, load_encoder
from spinebench.io import read_table, write_table


def main(snakemake):
    logging.basicConfig(
        filename=snakemake.log[0],
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    settings = snakemake.params.settings
    encoder = load_encoder(settings, int(snakemake.params.seed), threads=snakemake.threads)
    images = read_table(snakemake.input.images, columns=["image_id", "png"])
    embeddings = embed_table(images, encoder, int(settings["batch_size"]))
    write_table(embeddings, snakemake.output[0], schema=EMBEDDINGS_SCHEMA)


main(snakemake)  # noqa: F821
