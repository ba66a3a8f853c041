# Logs and a GPU slot first: importing TensorFlow already prints, and picks its GPUs.
from selfsup.jobs import start_training_job

start_training_job(snakemake.log[0])

from pathlib import Path

from selfsup import training
from selfsup.jobs import resume_dir, write_json
from selfsup.stages.downstream import train_downstream

seed = int(snakemake.wildcards.seed)
settings = snakemake.params.settings
training.configure(snakemake.params.tf_threads, seed, settings["deterministic"])
metrics_path = Path(snakemake.output.metrics)
metrics, history, _ = train_downstream(
    data_path=snakemake.input.data,
    split_path=snakemake.input.split,
    encoder_path=snakemake.input.get("encoder"),
    encoder_spec=snakemake.params.encoder,
    settings=settings,
    budget=snakemake.wildcards.budget,
    seed=seed,
    resume_dir=resume_dir(metrics_path.parent, list(snakemake.params), snakemake.input),
)
metrics.update(
    study=snakemake.params.study,
    method=snakemake.wildcards.method,
    pool=snakemake.wildcards.pool,
    seed=seed,
)
history.to_csv(snakemake.output.history, index=False)
write_json(metrics_path, metrics)
