# Logs first: importing the library may print to stderr.
from selfsup.jobs import log_to

log_to(snakemake.log[0])

import pandas as pd

from selfsup.report import figures

histories = {
    (method, seed): pd.read_csv(path)
    for (method, seed), path in zip(snakemake.params.runs, snakemake.input, strict=True)
}
figures.knn_curves(histories, snakemake.params.title, snakemake.output.png)
