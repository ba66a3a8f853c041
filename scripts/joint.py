# Logs and a GPU slot first: importing TensorFlow already prints, and picks its GPUs.
from selfsup.jobs import start_training_job

start_training_job(snakemake.log[0])

from pathlib import Path

import numpy as np

from selfsup import artifacts, training
from selfsup.data.dataset import NO_LABEL
from selfsup.jobs import resume_dir, write_json
from selfsup.stages.downstream import ExtraExamples, train_downstream

seed = int(snakemake.wildcards.seed)
settings = snakemake.params.settings
training.configure(snakemake.params.tf_threads, seed, settings["deterministic"])
metrics_path = Path(snakemake.output.metrics)
pool, part = artifacts.read_pool(snakemake.input.pool)
metrics, history, _ = train_downstream(
    data_path=snakemake.input.data,
    split_path=snakemake.input.split,
    encoder_path=None,
    encoder_spec=snakemake.params.encoder,
    settings=settings,
    budget=snakemake.wildcards.budget,
    seed=seed,
    extra=ExtraExamples(part, pool, labels=np.full(len(pool), NO_LABEL)),
    resume_dir=resume_dir(metrics_path.parent, list(snakemake.params), snakemake.input),
)
metrics.update(
    study=snakemake.params.study,
    method="none",  # the joint model starts from no pretext encoder
    pool=snakemake.wildcards.pool,
    seed=seed,
)
history.to_csv(snakemake.output.history, index=False)
write_json(metrics_path, metrics)
