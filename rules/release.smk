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
        seed=config["seed"],
        encoder=ENCODER,
    script:
        "../scripts/manifest.py"
