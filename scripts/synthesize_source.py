"""Snakemake entry point: write one synthetic source archive (spinebench.synth.write_source).

Inputs: none. Params: counts (dict: synthetic.demo or synthetic.full), seed, decoys, film_size
(synthetic.film_size for the radiograph sources, None for the others).
Wildcards: source. Output: output[0], the archive folder resources/synthetic/{source}.
Threads: snakemake.threads worker processes render the images (the output does not depend on it).
An archive already in the store (same source, count, seed, decoys and generator code) is copied from it.
"""

import logging
import time
from pathlib import Path

from spinebench.io import run_job
from spinebench.store import job_store
from spinebench.synth.stored import write_source_stored


def main(snakemake) -> None:
    log = logging.getLogger("synthesize_source")
    source = snakemake.wildcards.source
    out_dir = Path(snakemake.output[0])
    counts = dict(snakemake.params.counts)
    started = time.perf_counter()
    log.info(
        "writing synthetic %s into %s (counts=%s, seed=%s, decoys=%s, film_size=%s)",
        source,
        out_dir,
        counts,
        snakemake.params.seed,
        snakemake.params.decoys,
        snakemake.params.film_size,
    )
    restored = write_source_stored(
        job_store(snakemake.config),
        source,
        out_dir,
        counts,
        seed=int(snakemake.params.seed),
        decoys=bool(snakemake.params.decoys),
        workers=int(getattr(snakemake, "threads", 1) or 1),
        film_size=snakemake.params.film_size or "compact",
    )
    files = sorted(path for path in out_dir.rglob("*") if path.is_file())
    log.info(
        "%s %d files, %d bytes, in %.1f s",
        "copied from the store" if restored else "wrote",
        len(files),
        sum(p.stat().st_size for p in files),
        time.perf_counter() - started,
    )


run_job(main, snakemake)  # noqa: F821
