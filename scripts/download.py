# Logs first: importing TensorFlow already prints to stderr.
from selfsup.jobs import log_to

log_to(snakemake.log[0])

from selfsup.data.sources import download

for path in download(snakemake.params.dataset, snakemake.params.folder):
    print(f"verified {path}")
