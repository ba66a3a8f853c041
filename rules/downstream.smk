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
    threads: STUDY["threads"]
    resources:
        gpu=1,
        runtime=120,
        mem_mb=8000,
    params:
        # TensorFlow's thread count changes results bit for bit, so it is a param: editing it re-runs the job.
        tf_threads=STUDY["threads"],
        settings=classifier_settings,
        encoder=STUDY["encoder"],
        study=STUDY["study"],
        code=job_code("downstream"),
    script:
        "../scripts/downstream.py"
