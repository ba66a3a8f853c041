# Logs first: importing the library may print to stderr.
from selfsup.jobs import arguments, log_to

log_to(snakemake.log[0])

from selfsup.stages import download

download.job(**arguments(snakemake), config=snakemake.config)
