# Only sources with official files to fetch have a download rule.
if SOURCE.needs_files:

    rule download:
        output:
            [f"{DOWNLOAD_DIR}/{name}" for name in SOURCE.files],
        log:
            f"logs/download/{DATASET}.log",
        retries: 3
        localrule: True
        conda:
            "../envs/selfsup.yaml"
        params:
            dataset=DATASET,
            folder=DOWNLOAD_DIR,
        script:
            "../scripts/download.py"


rule prepare:
    input:
        prepare_inputs,
    output:
        data=f"results/data/{DATA_KEY}.h5",
    log:
        f"logs/prepare/{DATA_KEY}.log",
    conda:
        "../envs/selfsup.yaml"
    params:
        source=dataset_source,
        code=code_fingerprint(*DATA_CODE),
    script:
        "../scripts/prepare.py"


rule split:
    input:
        rules.prepare.output.data,
    output:
        split=f"{RESULTS}/split/seed{{seed}}.h5",
    log:
        f"logs/{STUDY['study']}/split/seed{{seed}}.log",
    conda:
        "../envs/selfsup.yaml"
    params:
        split=split_settings,
        study=STUDY["study"],
        code=code_fingerprint("data/splits.py", "data/normalization.py", "artifacts.py"),
    script:
        "../scripts/split.py"
