# Logs first: importing TensorFlow already prints to stderr.
from selfsup.jobs import log_to

log_to(snakemake.log[0])

import pandas as pd

from selfsup.report import comparisons, figures, tables

summary = pd.read_csv(snakemake.input.summary)
paired = comparisons.against(pd.read_csv(snakemake.input.runs), tables.SUPERVISED)
figures.accuracy_vs_labels(
    summary, snakemake.params.title, snakemake.output.png, snakemake.output.svg, paired=paired
)
