# Logs first: importing TensorFlow already prints to stderr.
from selfsup.jobs import log_to

log_to(snakemake.log[0])

import pandas as pd

from selfsup.report import figures

summary = pd.read_csv(snakemake.input[0])
figures.accuracy_vs_labels(summary, snakemake.params.title, snakemake.output.png, snakemake.output.svg)
