# Logs first: importing the library may print to stderr.
from selfsup.jobs import log_to

log_to(snakemake.log[0])

import numpy as np

from selfsup import artifacts
from selfsup.data.dataset import scale
from selfsup.report import figures

SHOWN = 8  # most and least typical images shown
result = artifacts.read_outliers(snakemake.input.scores)
order = np.argsort(result["scores"])  # least typical first
part = result.get("part", "train")


def images(positions):
    return scale(artifacts.read_images(snakemake.input.data, part, result["indices"][positions]))


typical, atypical = order[::-1][:SHOWN], order[:SHOWN]
figures.outlier_scores(
    result["scores"],
    result["threshold"],
    images(typical),
    result["scores"][typical],
    images(atypical),
    result["scores"][atypical],
    snakemake.params.title,
    snakemake.output.png,
)
