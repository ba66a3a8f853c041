# Logs first: importing the library may print to stderr.
from selfsup.jobs import log_to

log_to(snakemake.log[0])

from selfsup.report import figures, tables

figures.self_training_rounds(tables.collect(snakemake.input), snakemake.params.title, snakemake.output.png)
