rule download:
    output:
        expand("resources/{{dataset}}/{stem}.gz", stem=IDX_STEMS),
    log:
        "logs/download/{dataset}.log",
    wildcard_constraints:
        dataset="mnist|fashion_mnist",
    retries: 3
    localrule: True
    conda:
        "../envs/selfsup.yaml"
    params:
        folder="resources/{dataset}",
    script:
        "../scripts/download.py"


rule prepare:
    input:
        prepare_inputs,
    output:
        DATA_FILE,
    log:
        f"logs/prepare/{DATASET}.log",
    conda:
        "../envs/selfsup.yaml"
    params:
        source=dataset_source,
        code=code_fingerprint("data/sources.py", "artifacts.py"),
    script:
        "../scripts/prepare.py"


rule split:
    input:
        DATA_FILE,
    output:
        f"{RESULTS}/split/seed{{seed}}.h5",
    log:
        f"logs/{STUDY['study']}/split/seed{{seed}}.log",
    conda:
        "../envs/selfsup.yaml"
    params:
        split=STUDY["split"],
        study=STUDY["study"],
        code=code_fingerprint("data/splits.py", "artifacts.py"),
    script:
        "../scripts/split.py"
