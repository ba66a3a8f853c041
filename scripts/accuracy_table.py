# Logs first: importing TensorFlow already prints to stderr.
from selfsup.jobs import log_to

log_to(snakemake.log[0])

from pathlib import Path

from selfsup.report import tables

runs = tables.collect(snakemake.input)
summary = tables.summarize(runs)
runs.drop(columns=["example"]).to_csv(snakemake.output.runs, index=False)
summary.to_csv(snakemake.output.csv, index=False)
markdown = tables.to_markdown(summary, runs)
Path(snakemake.output.markdown).write_text(markdown)
Path(snakemake.output.answers).write_text(
    tables.answers_rst(runs, snakemake.params.study, snakemake.params.description)
)
print(markdown)
