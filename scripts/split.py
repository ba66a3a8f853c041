# Logs first: importing TensorFlow already prints to stderr.
from selfsup.jobs import log_to

log_to(snakemake.log[0])

from selfsup import artifacts
from selfsup.data.splits import make_split

seed = int(snakemake.wildcards.seed)
dataset = artifacts.read_dataset(snakemake.input[0])
split = make_split(dataset.y_train, len(dataset.y_test), seed=seed, **snakemake.params.split)
print(f"labeled {len(split.labeled)}, unlabeled {len(split.unlabeled)}, test {len(split.test)}")
meta = {"study": snakemake.params.study, "seed": seed, "split": snakemake.params.split}
artifacts.write_split(snakemake.output[0], split, meta)
