# The catalog of rendered images, the per-disease library and the hard-negative distractors.


rule catalog:
    input:
        standardized=expand("results/standardized/{source}.parquet", source=SOURCES),
        images=image_shards(),
        code=package("catalog", "tables"),
    output:
        "results/benchmark/images.parquet",
    log:
        "logs/catalog.log",
    conda:
        "../envs/build.yaml"
    script:
        "../scripts/catalog.py"


rule distractors:
    input:
        catalog="results/benchmark/images.parquet",
        embeddings=embedding_shards(),
        code=package("distractors", "embeddings", "store", "codeversion", "seeding"),
    output:
        library="results/benchmark/library.parquet",
        distractors="results/benchmark/distractors.parquet",
    log:
        "logs/distractors.log",
    benchmark:
        "benchmarks/distractors.tsv"
    conda:
        "../envs/build.yaml"
    params:
        library_per_disease=config["distractors"]["library_per_disease"],
        distractor_count=config["distractors"]["count"],
        seed=config["seeds"]["library"],
    script:
        "../scripts/distractors.py"
