rule pseudo_labels:
    input:
        pool=pool_input,
    output:
        labels=f"{RESULTS}/pseudo/{{pool}}/{{pretext}}/seed{{seed}}.h5",
    log:
        f"{LOGS}/pseudo/{{pool}}/{{pretext}}/seed{{seed}}.log",
    conda:
        "../envs/selfsup.yaml"
    params:
        method=pseudo_label_settings,
        study=STUDY["study"],
        code=job_code("pseudo_labels", method_module),
    script:
        "../scripts/pseudo_labels.py"
