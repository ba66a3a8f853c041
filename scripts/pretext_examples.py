# Logs first: importing TensorFlow already prints to stderr.
from selfsup.jobs import log_to

log_to(snakemake.log[0])

from selfsup import artifacts
from selfsup.report import figures

examples = artifacts.read_examples(snakemake.input[0])
figures.pretext_examples(examples, snakemake.params.title, snakemake.output[0])
