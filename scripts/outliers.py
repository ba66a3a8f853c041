# Logs and a GPU slot first: importing TensorFlow already prints, and picks its GPUs.
from selfsup.jobs import start_training_job

start_training_job(snakemake.log[0])

from pathlib import Path

from selfsup import training
from selfsup.jobs import resume_dir
from selfsup.stages.outliers import filter_outliers

seed = int(snakemake.wildcards.seed)
settings = snakemake.params.settings
training.configure(snakemake.params.tf_threads, seed, settings["deterministic"])
scores_path = Path(snakemake.output.scores)
filter_outliers(
    data_path=snakemake.input.data,
    split_path=snakemake.input.split,
    pool_path=snakemake.input.pool,
    settings=settings,
    encoder_spec=snakemake.params.encoder,
    seed=seed,
    meta={"study": snakemake.params.study},
    outliers_path=scores_path,
    inliers_path=snakemake.output.pool,
    history_path=snakemake.output.history,
    resume_dir=resume_dir(scores_path.parent, list(snakemake.params), snakemake.input),
)
