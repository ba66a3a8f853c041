rule pretext:
    input:
        unpack(pretext_inputs),
    output:
        encoder=f"{RESULTS}/encoders/{{pool}}/{{pretext}}/seed{{seed}}/encoder.h5",
        history=f"{RESULTS}/encoders/{{pool}}/{{pretext}}/seed{{seed}}/history.csv",
        examples=f"{RESULTS}/encoders/{{pool}}/{{pretext}}/seed{{seed}}/examples.h5",
    log:
        f"{LOGS}/pretext/{{pool}}/{{pretext}}/seed{{seed}}.log",
    benchmark:
        f"{BENCHMARKS}/pretext/{{pool}}/{{pretext}}/seed{{seed}}.tsv"
    conda:
        "../envs/selfsup.yaml"
    threads: STUDY["threads"]
    resources:
        **training_resources(runtime=240, mem_mb=16000),
    params:
        **TRAINING_PARAMS,
        settings=pretext_settings,
        code=job_code("pretext", method_module),
    script:
        "../scripts/pretext.py"
