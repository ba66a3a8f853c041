# Logs first: importing TensorFlow already prints to stderr.
from selfsup.jobs import log_to

log_to(snakemake.log[0])

from selfsup import artifacts
from selfsup.data.sources import load_dataset

source = snakemake.params.source
dataset = load_dataset(source["name"], source["folder"], **source["options"])
print(f"{source['name']}: train {dataset.x_train.shape}, test {dataset.x_test.shape}")
artifacts.write_dataset(snakemake.output[0], dataset, {"dataset": source["name"], "source": source})
