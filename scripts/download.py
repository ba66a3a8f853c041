# Logs first: importing TensorFlow already prints to stderr.
from selfsup.jobs import log_to

log_to(snakemake.log[0])

from selfsup.data.sources import download_idx

for path in download_idx(snakemake.wildcards.dataset, snakemake.params.folder):
    print(f"verified {path}")
