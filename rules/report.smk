rule accuracy_table:
    input:
        expand("{run}/metrics.json", run=run_dirs()),
    output:
        csv=report(
            f"{RESULTS}/tables/accuracy.csv",
            caption="../report/accuracy_table.rst",
            category="Accuracy",
        ),
        markdown=f"{RESULTS}/tables/accuracy.md",
        runs=f"{RESULTS}/tables/runs.csv",
        # The first page of snakemake --report (see the report directive in the Snakefile).
        answers=f"{RESULTS}/tables/answers.rst",
    log:
        f"{LOGS}/report/accuracy_table.log",
    conda:
        "../envs/selfsup.yaml"
    params:
        code=job_code("accuracy_table"),
        study=STUDY["study"],
        description=STUDY["description"],
    script:
        "../scripts/accuracy_table.py"


rule accuracy_figure:
    input:
        summary=rules.accuracy_table.output.csv,
        runs=rules.accuracy_table.output.runs,
    output:
        png=report(
            f"{RESULTS}/figures/accuracy_vs_labels.png",
            caption="../report/accuracy_vs_labels.rst",
            category="Accuracy",
        ),
        svg=f"{RESULTS}/figures/accuracy_vs_labels.svg",
    log:
        f"{LOGS}/report/accuracy_figure.log",
    conda:
        "../envs/selfsup.yaml"
    params:
        title=STUDY["study"],
        code=job_code("accuracy_figure"),
    script:
        "../scripts/accuracy_figure.py"


rule class_probabilities:
    input:
        data=rules.prepare.output.data,
        metrics=example_runs(),
    output:
        report(
            f"{RESULTS}/figures/class_probabilities.png",
            caption="../report/class_probabilities.rst",
            category="Examples",
        ),
    log:
        f"{LOGS}/report/class_probabilities.log",
    conda:
        "../envs/selfsup.yaml"
    params:
        code=job_code("class_probabilities"),
    script:
        "../scripts/class_probabilities.py"


rule pretext_examples:
    input:
        expand(
            rules.pretext.output.examples,
            pool=POOLS[0],
            seed=STUDY["seeds"][0],
            allow_missing=True,
        ),
    output:
        report(
            f"{RESULTS}/figures/pretext_examples_{{pretext}}.png",
            caption="../report/pretext_examples.rst",
            category="Pretext",
        ),
    log:
        f"{LOGS}/report/pretext_examples_{{pretext}}.log",
    conda:
        "../envs/selfsup.yaml"
    params:
        title=pretext_examples_title,
        code=job_code("pretext_examples"),
    script:
        "../scripts/pretext_examples.py"


rule knn_figure:
    input:
        expand(
            rules.pretext.output.history,
            pool=POOLS,
            pretext=list(PRETEXT),
            seed=STUDY["seeds"],
        ),
    output:
        png=report(
            f"{RESULTS}/figures/knn_accuracy.png",
            caption="../report/knn_accuracy.rst",
            category="Pretext",
        ),
    log:
        f"{LOGS}/report/knn_figure.log",
    conda:
        "../envs/selfsup.yaml"
    params:
        runs=[
            (method if pool == "all" else f"{method} ({pool})", seed)
            for pool in POOLS
            for method in PRETEXT
            for seed in STUDY["seeds"]
        ],
        title=STUDY["study"],
        code=job_code("knn_figure"),
    script:
        "../scripts/knn_figure.py"
