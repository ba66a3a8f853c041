# Logs and a GPU slot first: importing TensorFlow already prints, and picks its GPUs.
from selfsup.jobs import start_training_job

start_training_job(snakemake.log[0])

from pathlib import Path

from selfsup import training
from selfsup.jobs import resume_dir
from selfsup.stages.pretext import train_pretext

seed = int(snakemake.wildcards.seed)
settings = snakemake.params.settings
training.configure(snakemake.params.tf_threads, seed, settings["deterministic"])
encoder_path = Path(snakemake.output.encoder)
train_pretext(
    data_path=snakemake.input.data,
    split_path=snakemake.input.split,
    pool_path=snakemake.input.pool,
    pseudo_path=snakemake.input.get("pseudo"),
    settings=settings,
    encoder_spec=snakemake.params.encoder,
    seed=seed,
    meta={
        "study": snakemake.params.study,
        "pretext": snakemake.wildcards.method,
        "pool": snakemake.wildcards.pool,
    },
    encoder_path=encoder_path,
    history_path=snakemake.output.history,
    examples_path=snakemake.output.examples,
    resume_dir=resume_dir(encoder_path.parent, list(snakemake.params), snakemake.input),
)
