# The benchmark for other harnesses (docs/exports.md): a Hugging Face dataset, an lmms-eval task folder,
# VLMEvalKit TSVs and the original SpineBench release's JSON layout. Each export reads the benchmark tables
# and images only, so it reruns when the benchmark changes and never for a new model.


rule export_hf:
    input:
        **export_inputs(),
        card="templates/exports/hf_card.md.j2",
        sources="resources/exports/sources.yaml",
        code=EXPORT_CODE + package("exports/hf"),
    output:
        directory("results/exports/hf"),
    log:
        "logs/export/hf.log",
    benchmark:
        "benchmarks/export/hf.tsv"
    conda:
        "../envs/build.yaml"
    params:
        rows_per_file=config["export"]["hf"]["rows_per_file"],
    script:
        "../scripts/export_hf.py"


rule export_lmms_eval:
    input:
        **export_inputs(),
        hf="results/exports/hf",
        templates=expand("templates/prompts/{task}.j2", task=TASKS),
        code=EXPORT_CODE + package("exports/lmms_eval", "harness/lmms_eval", "prompts"),
    output:
        directory("results/exports/lmms_eval"),
    log:
        "logs/export/lmms_eval.log",
    conda:
        "../envs/build.yaml"
    params:
        max_new_tokens=config["export"]["lmms_eval"]["max_new_tokens"],
    script:
        "../scripts/export_lmms_eval.py"


rule export_vlmevalkit:
    input:
        **export_inputs(),
        code=EXPORT_CODE + package("exports/vlmevalkit", "prompts"),
    output:
        directory("results/exports/vlmevalkit"),
    log:
        "logs/export/vlmevalkit.log",
    benchmark:
        "benchmarks/export/vlmevalkit.tsv"
    conda:
        "../envs/build.yaml"
    script:
        "../scripts/export_vlmevalkit.py"


rule export_spinebench_json:
    input:
        **export_inputs(),
        code=EXPORT_CODE + package("exports/spinebench_json", "prompts"),
    output:
        directory("results/exports/spinebench_json"),
    log:
        "logs/export/spinebench_json.log",
    benchmark:
        "benchmarks/export/spinebench_json.tsv"
    conda:
        "../envs/build.yaml"
    script:
        "../scripts/export_spinebench_json.py"
