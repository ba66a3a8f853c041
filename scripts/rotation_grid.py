# Logs first: importing TensorFlow already prints to stderr.
from selfsup.jobs import log_to

log_to(snakemake.log[0])

from selfsup import artifacts
from selfsup.report import figures

dataset = artifacts.read_dataset(snakemake.input.data)
split = artifacts.read_split(snakemake.input.split)
figures.rotation_grid(dataset.x_train[split.unlabeled[:3]], snakemake.output[0])
