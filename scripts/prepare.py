# Logs first: importing TensorFlow already prints to stderr.
import sys

from selfsup.jobs import log_to

log_to(snakemake.log[0])

from selfsup.data.dataset import DataError
from selfsup.data.sources import prepare

source = snakemake.params.source
try:
    prepare(
        source["name"],
        source["folder"],
        source["options"],
        snakemake.output.data,
        {"dataset": source["name"], "source": source},
        contamination=source.get("contamination"),
        # Read from the study, not a param: turning the check off must not re-run prepare.
        verify_checksums=snakemake.config.get("dataset", {}).get("verify_checksums", True),
    )
except DataError as error:  # the message names the file and the fix; a traceback would bury it
    sys.exit(f"{error}")
