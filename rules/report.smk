# Self-contained HTML and Markdown report.


rule report:
    input:
        leaderboard="results/metrics/leaderboard.json",
        summaries=expand("results/metrics/models/{model}.json", model=MODELS),
        breakdowns=expand("results/metrics/models/{model}.breakdown.csv", model=MODELS),
        catalog="results/benchmark/images.parquet",
        subset="results/benchmark/subset.parquet",
        questions=expand("results/benchmark/{task}.parquet", task=TASKS),
        rejected=rejected_tables(),
        paper="resources/paper_table2.csv",
        html_template="templates/report/report.html.j2",
        md_template="templates/report/report.md.j2",
        code=package("report"),
    output:
        html="results/report/report.html",
        markdown="results/report/report.md",
    log:
        "logs/report.log",
    conda:
        "../envs/evaluate.yaml"
    params:
        seeds=config["seeds"],
        split=config["evaluate"]["split"],
    script:
        "../scripts/report.py"
