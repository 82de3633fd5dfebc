# Standardized rows -> 2D RGB PNG shards with quality metrics (contiguous image_id chunks per source).


rule render_shard:
    input:
        table="results/standardized/{source}.parquet",
        archive=source_archive,
        inventory=source_inventory,
        code=package(
            "archive",
            "decode",
            "scaled_decode",
            "quality",
            "render",
            "render_cache",
            "progress",
            "shards",
            "tables",
            "store",
            "codeversion",
        ),
    output:
        images="results/images/{source}/{shard}.parquet",
        rejected="results/rejected/render/{source}/{shard}.parquet",
    log:
        "logs/render/{source}/{shard}.log",
    benchmark:
        "benchmarks/render/{source}/{shard}.tsv"
    conda:
        "../envs/build.yaml"
    params:
        shard_index=lambda wildcards: int(wildcards.shard),
        shard_count=lambda wildcards: config["sources"][wildcards.source]["shards"],
        settings=config["render"],
    script:
        "../scripts/render_shard.py"
