# Logs first: importing TensorFlow already prints to stderr.
from selfsup.jobs import log_to

log_to(snakemake.log[0])

from selfsup.data.sources import prepare

source = snakemake.params.source
prepare(
    source["name"],
    source["folder"],
    source["options"],
    snakemake.output.data,
    {"dataset": source["name"], "source": source},
    contamination=source.get("contamination"),
)
