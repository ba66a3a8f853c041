# Outlier filtering (the inliers pool) and self-training's rounds; the joint model
# and the other protocols that read a pool run under rule downstream.


rule outliers:
    input:
        unpack(stage_inputs),
        pool=pool_file("all", "{seed}"),
    output:
        scores=f"{RESULTS}/outliers/seed{{seed}}/scores.h5",
        history=f"{RESULTS}/outliers/seed{{seed}}/history.csv",
        pool=f"{RESULTS}/pools/inliers/seed{{seed}}.h5",
    log:
        f"{LOGS}/outliers/seed{{seed}}.log",
    benchmark:
        f"{BENCHMARKS}/outliers/seed{{seed}}.tsv"
    conda:
        "../envs/selfsup.yaml"
    threads: STUDY["threads"]
    resources:
        **training_resources(runtime=120, mem_mb=8000),
    params:
        **TRAINING_PARAMS,
        settings=outlier_settings,
        code=job_code("outliers"),
    script:
        "../scripts/outliers.py"


rule outlier_figure:
    input:
        data=rules.prepare.output.data,
        scores=expand(rules.outliers.output.scores, seed=STUDY["seeds"][0])[0],
    output:
        png=report(
            f"{RESULTS}/figures/outliers.png",
            caption="../report/outliers.rst",
            category="Outliers",
        ),
    log:
        f"{LOGS}/report/outlier_figure.log",
    conda:
        "../envs/selfsup.yaml"
    params:
        title=f"{STUDY['study']}, seed {STUDY['seeds'][0]}",
        code=job_code("outlier_figure"),
    script:
        "../scripts/outlier_figure.py"


rule self_training_round:
    input:
        unpack(self_training_inputs),
    output:
        labels=f"{RESULTS}/self_training/{{pool}}/{{pretext}}/n{{budget}}/seed{{seed}}/round{{round}}.h5",
        history=f"{RESULTS}/self_training/{{pool}}/{{pretext}}/n{{budget}}/seed{{seed}}/round{{round}}_history.csv",
    log:
        f"{LOGS}/self_training/{{pool}}/{{pretext}}/n{{budget}}/seed{{seed}}/round{{round}}.log",
    benchmark:
        f"{BENCHMARKS}/self_training/{{pool}}/{{pretext}}/n{{budget}}/seed{{seed}}/round{{round}}.tsv"
    conda:
        "../envs/selfsup.yaml"
    threads: STUDY["threads"]
    resources:
        **training_resources(runtime=120, mem_mb=8000),
    params:
        **TRAINING_PARAMS,
        settings=self_training_settings,
        threshold=STUDY["self_training"]["threshold"],
        code=job_code("self_training_round"),
    script:
        "../scripts/self_training.py"


rule self_training:
    input:
        unpack(self_training_inputs),
    output:
        metrics=f"{RESULTS}/{run(protocol='self_training')}/metrics.json",
        history=f"{RESULTS}/{run(protocol='self_training')}/history.csv",
    log:
        f"{LOGS}/{run(protocol='self_training')}.log",
    benchmark:
        f"{BENCHMARKS}/{run(protocol='self_training')}.tsv"
    conda:
        "../envs/selfsup.yaml"
    threads: STUDY["threads"]
    resources:
        **training_resources(runtime=120, mem_mb=8000),
    params:
        **TRAINING_PARAMS,
        settings=self_training_settings,
        threshold=None,
        code=job_code("self_training"),
    script:
        "../scripts/self_training.py"


rule self_training_figure:
    input:
        expand("{run}/metrics.json", run=run_dirs(["self_training"])),
    output:
        png=report(
            f"{RESULTS}/figures/self_training_rounds.png",
            caption="../report/self_training_rounds.rst",
            category="Self-training",
        ),
    log:
        f"{LOGS}/report/self_training_figure.log",
    conda:
        "../envs/selfsup.yaml"
    params:
        title=STUDY["study"],
        code=job_code("self_training_figure"),
    script:
        "../scripts/self_training_figure.py"
