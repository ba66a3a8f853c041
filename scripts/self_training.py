# Logs and a GPU slot first: importing TensorFlow already prints, and picks its GPUs.
from selfsup.jobs import arguments, start_training_job

start_training_job(snakemake.log[0])

from selfsup.stages import self_training

self_training.job(**arguments(snakemake))
