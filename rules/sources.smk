# Synthetic raw archives with each real dataset's layout, built for sources configured without a path.


rule synthesize_source:
    input:
        code=package_dir("synth") + package("store", "codeversion", "seeding"),
    output:
        directory("resources/synthetic/{source}"),
    log:
        "logs/synthesize/{source}.log",
    benchmark:
        "benchmarks/synthesize/{source}.tsv"
    conda:
        "../envs/build.yaml"
    threads: 2
    params:
        counts=lambda wildcards: config["synthetic"][config["synthetic"]["scale"]],
        seed=config["seeds"]["synthetic"],
        decoys=config["synthetic"]["decoys"],
        film_size=lambda wildcards: (
            config["synthetic"]["film_size"]
            if wildcards.source in ("vindr", "buu")
            else None
        ),
    script:
        "../scripts/synthesize_source.py"
