rule downstream:
    input:
        unpack(downstream_inputs),
    output:
        metrics=f"{RESULTS}/runs/{{pool}}/{{method}}/{{protocol}}/n{{budget}}/seed{{seed}}/metrics.json",
        history=f"{RESULTS}/runs/{{pool}}/{{method}}/{{protocol}}/n{{budget}}/seed{{seed}}/history.csv",
    log:
        f"logs/{STUDY['study']}/runs/{{pool}}/{{method}}/{{protocol}}/n{{budget}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/runs/{{pool}}/{{method}}/{{protocol}}/n{{budget}}/seed{{seed}}.tsv"
    conda:
        "../envs/selfsup.yaml"
    threads: 8
    resources:
        gpu=1,
        runtime=120,
        mem_mb=8000,
    params:
        settings=classifier_settings,
        encoder=STUDY["encoder"],
        study=STUDY["study"],
        code=downstream_code,
    script:
        "../scripts/downstream.py"
