# Logs first: importing TensorFlow already prints to stderr.
import sys

from selfsup.jobs import log_to

log_to(snakemake.log[0])

from selfsup.data.dataset import DataError
from selfsup.data.sources import download

# The study setting that serves these files offline. Not a param: a new param would make
# Snakemake re-run (and first delete) every finished download.
setting = "dataset.contamination.data_dir" if snakemake.rule == "download_foreign" else "dataset.data_dir"
try:
    paths = download(snakemake.params.dataset, snakemake.params.folder, option=setting)
except DataError as error:  # the message says what to do; a traceback would bury it
    sys.exit(f"{error}")
for path in paths:
    print(f"verified {path}")
