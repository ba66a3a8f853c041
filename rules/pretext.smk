rule pretext:
    input:
        unpack(pretext_inputs),
    output:
        encoder=f"{RESULTS}/encoders/{{pool}}/{{method}}/seed{{seed}}/encoder.h5",
        history=f"{RESULTS}/encoders/{{pool}}/{{method}}/seed{{seed}}/history.csv",
        examples=f"{RESULTS}/encoders/{{pool}}/{{method}}/seed{{seed}}/examples.h5",
    log:
        f"logs/{STUDY['study']}/pretext/{{pool}}/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/pretext/{{pool}}/{{method}}/seed{{seed}}.tsv"
    conda:
        "../envs/selfsup.yaml"
    threads: STUDY["threads"]
    resources:
        gpu=1,
        runtime=240,
        mem_mb=16000,
    params:
        # TensorFlow's thread count changes results bit for bit, so it is a param: editing it re-runs the job.
        tf_threads=STUDY["threads"],
        settings=pretext_settings,
        encoder=STUDY["encoder"],
        study=STUDY["study"],
        code=job_code("pretext", method_module),
    script:
        "../scripts/pretext.py"
