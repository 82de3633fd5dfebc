# The release manifest: content hashes and counts of every benchmark table, for `dvc push` and checks.


rule manifest:
    input:
        tables=BENCHMARK_TABLES,
        pool=config["questions"]["pool"],
        code=package("release"),
    output:
        "results/benchmark/manifest.json",
    log:
        "logs/manifest.log",
    conda:
        "../envs/build.yaml"
    params:
        seeds={
            key: config["seeds"][key]
            for key in ("synthetic", "encoder", "library", "questions", "subset")
        },
        encoder=ENCODER,
    script:
        "../scripts/manifest.py"
