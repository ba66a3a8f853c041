rule pseudo_labels:
    input:
        f"{RESULTS}/split/seed{{seed}}.h5",
    output:
        f"{RESULTS}/pseudo/{{method}}/seed{{seed}}.h5",
    log:
        f"logs/{STUDY['study']}/pseudo/{{method}}/seed{{seed}}.log",
    conda:
        "../envs/selfsup.yaml"
    params:
        method=pseudo_label_settings,
        study=STUDY["study"],
        code=pseudo_label_code,
    script:
        "../scripts/pseudo_labels.py"
