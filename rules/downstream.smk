# One run of any protocol whose family's RULE is downstream (selfsup.protocols).


rule downstream:
    input:
        unpack(downstream_inputs),
    output:
        metrics=f"{RESULTS}/{RUN}/metrics.json",
        history=f"{RESULTS}/{RUN}/history.csv",
    log:
        f"{LOGS}/{RUN}.log",
    benchmark:
        f"{BENCHMARKS}/{RUN}.tsv"
    conda:
        "../envs/selfsup.yaml"
    threads: STUDY["threads"]
    resources:
        **training_resources(runtime=120, mem_mb=8000),
    params:
        **TRAINING_PARAMS,
        settings=run_settings,
        code=job_code("downstream", family_module),
    script:
        "../scripts/downstream.py"
