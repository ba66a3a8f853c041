# Logs first: importing TensorFlow already prints to stderr.
from selfsup.jobs import log_to

log_to(snakemake.log[0])

from selfsup import artifacts
from selfsup.data.splits import split_dataset

seed = int(snakemake.wildcards.seed)
settings = snakemake.params.split
split = split_dataset(snakemake.input[0], settings, seed)
print(
    f"labeled {len(split.labeled)}, unlabeled {len(split.unlabeled)} ({split.unlabeled_part} images), "
    f"test {len(split.test)}, normalization {split.normalization.kind}"
)
artifacts.write_split(
    snakemake.output.split, split, {"study": snakemake.params.study, "seed": seed, "split": settings}
)
artifacts.write_pool(
    snakemake.output.pool,
    split.unlabeled,
    split.unlabeled_part,
    {"study": snakemake.params.study, "seed": seed, "pool": "all"},
)
