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
            folder=output_folder,
        script:
            "../scripts/download.py"


# The foreign source of dataset.contamination, when it has official files to fetch.
if FOREIGN and FOREIGN.needs_files:

    rule download_foreign:
        output:
            [f"{FOREIGN_DOWNLOAD_DIR}/{name}" for name in FOREIGN.files],
        log:
            f"logs/download/{CONTAMINATION['source']}.log",
        retries: 3
        localrule: True
        conda:
            "../envs/selfsup.yaml"
        params:
            dataset=CONTAMINATION["source"],
            folder=output_folder,
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
        code=job_code("prepare"),
    script:
        "../scripts/prepare.py"


rule split:
    input:
        data=rules.prepare.output.data,
    output:
        split=f"{RESULTS}/split/seed{{seed}}.h5",
        # The default pool: every unlabeled image of the split.
        pool=f"{RESULTS}/pools/all/seed{{seed}}.h5",
    log:
        f"{LOGS}/split/seed{{seed}}.log",
    conda:
        "../envs/selfsup.yaml"
    params:
        split=split_settings,
        study=STUDY["study"],
        code=job_code("split"),
    script:
        "../scripts/split.py"
