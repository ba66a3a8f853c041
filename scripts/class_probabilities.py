# Logs first: importing TensorFlow already prints to stderr.
from selfsup.jobs import log_to

log_to(snakemake.log[0])

from selfsup import artifacts
from selfsup.report import figures, tables

dataset = artifacts.read_dataset(snakemake.input.data)
runs = tables.collect(snakemake.input.metrics)
example = runs.example.iloc[0]  # every run predicts the same test image
runs["probabilities"] = [e["probabilities"] for e in runs.example]
figures.class_probabilities(
    dataset.x_test[example["test_index"]],
    dataset.class_names[example["label"]],
    runs,
    dataset.class_names,
    snakemake.output[0],
)
