"""Snakemake entry point of rule embed_shard: one image shard -> its open_clip embedding shard."""

from spinebench.embed import EMBEDDINGS_SCHEMA, embed_table, load_encoder
from spinebench.io import configure_job_logging, read_table, write_table


def main(snakemake):
    configure_job_logging(snakemake.log[0])
    settings = snakemake.params.settings
    encoder = load_encoder(settings, int(snakemake.params.seed), threads=snakemake.threads)
    images = read_table(snakemake.input.images, columns=["image_id", "png"])
    embeddings = embed_table(images, encoder, int(settings["batch_size"]))
    write_table(embeddings, snakemake.output[0], schema=EMBEDDINGS_SCHEMA)


main(snakemake)  # noqa: F821
