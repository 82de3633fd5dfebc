"""Snakemake entry point of rule embed_shard: one image shard -> its open_clip embedding shard.

Embeddings whose content key (PNG digest + encoder fingerprint) is in the store are taken from it; the
encoder (and with it torch and open_clip) is loaded only when some image of the shard is not.
"""

from spinebench.embeddings import (
    EMBEDDINGS_SCHEMA,
    STORE_KIND,
    EncoderSettings,
    embed_with_store,
    encoder_fingerprint,
)
from spinebench.io import read_table, run_job, write_table
from spinebench.store import Tally, job_store


def main(snakemake):
    settings = EncoderSettings.from_params(snakemake.params.settings)
    seed = int(snakemake.params.seed)

    def make_embedder():
        from spinebench.embed import make_embedder  # torch and open_clip: only when something is missing

        return make_embedder(settings, seed, threads=snakemake.threads)

    store = job_store(snakemake.config)
    tally = Tally()
    images = read_table(snakemake.input.images, columns=["image_id", "png"])
    fingerprint = encoder_fingerprint(settings, seed)
    embeddings = embed_with_store(images, fingerprint, store, make_embedder, tally)
    write_table(embeddings, snakemake.output[0], schema=EMBEDDINGS_SCHEMA)
    store.record_refs(snakemake.output[0], STORE_KIND, tally)


run_job(main, snakemake)  # noqa: F821
