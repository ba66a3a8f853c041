# Logs first: importing TensorFlow already prints to stderr.
from selfsup.jobs import log_to

log_to(snakemake.log[0])

from selfsup import artifacts
from selfsup.report import figures, tables

class_names = artifacts.read_labels(snakemake.input.data)["class_names"]
runs = tables.collect(snakemake.input.metrics)
example = runs.example.iloc[0]  # every run predicts the same test image
runs["probabilities"] = [e["probabilities"] for e in runs.example]
figures.class_probabilities(
    artifacts.read_images(snakemake.input.data, "test", [example["test_index"]])[0],
    class_names[example["label"]],
    runs,
    class_names,
    snakemake.output[0],
)
