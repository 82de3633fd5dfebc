# Image shards -> open_clip (SigLIP2 by default) embedding shards; the encoder name is in the path.


rule embed_shard:
    input:
        images="results/images/{source}/{shard}.parquet",
        encoder=encoder_files(),
        code=package("embed", "embeddings", "store", "codeversion", "progress"),
    output:
        "results/embeddings/{encoder}/{source}/{shard}.parquet",
    log:
        "logs/embed/{encoder}/{source}/{shard}.log",
    benchmark:
        "benchmarks/embed/{encoder}/{source}/{shard}.tsv"
    conda:
        "../envs/build.yaml"
    threads: 2
    resources:
        mem_mb=4000,
    params:
        settings=embed_settings(),
        seed=config["seeds"]["encoder"],
    script:
        "../scripts/embed_shard.py"
