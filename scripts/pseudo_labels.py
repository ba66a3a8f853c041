# Logs first: importing TensorFlow already prints to stderr.
from selfsup.jobs import log_to

log_to(snakemake.log[0])

from selfsup import artifacts
from selfsup.pretext import get_method

settings = snakemake.params.method
seed = int(snakemake.wildcards.seed)
split = artifacts.read_split(snakemake.input[0])
positions, labels = get_method(settings["method"]).pseudo_labels(
    len(split.unlabeled), settings["options"], seed
)
print(f"{len(labels)} pseudo-labels for {len(split.unlabeled)} unlabeled images")
meta = {
    "study": snakemake.params.study,
    "method": settings["method"],
    "seed": seed,
    "options": settings["options"],
}
# Positions index the unlabeled pool; store indices into the training images.
artifacts.write_pseudo_labels(snakemake.output[0], split.unlabeled[positions], labels, meta)
