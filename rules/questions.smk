# Diagnosis and localization questions: paraphrase pool, options and seeded option order.


rule questions:
    input:
        catalog="results/benchmark/images.parquet",
        distractors="results/benchmark/distractors.parquet",
        pool=config["questions"]["pool"],
        code=package("questions", "seeding"),
    output:
        diagnosis="results/benchmark/diagnosis.parquet",
        localization="results/benchmark/localization.parquet",
    log:
        "logs/questions.log",
    conda:
        "../envs/build.yaml"
    params:
        seed=config["seeds"]["questions"],
    script:
        "../scripts/questions.py"
