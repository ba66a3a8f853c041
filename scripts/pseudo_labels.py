# Logs first. Rotation's pseudo-labels need no TensorFlow (selfsup.pretext imports lazily).
from selfsup.jobs import log_to

log_to(snakemake.log[0])

from selfsup import artifacts
from selfsup.pretext import get_method

settings = snakemake.params.method
seed = int(snakemake.wildcards.seed)
pool, part = artifacts.read_pool(snakemake.input[0])
positions, labels = get_method(settings["method"]).pseudo_labels(len(pool), settings["options"], seed)
print(f"{len(labels)} pseudo-labels for the {len(pool)} images of pool {snakemake.wildcards.pool}")
meta = {
    "study": snakemake.params.study,
    "method": settings["method"],
    "seed": seed,
    "pool": snakemake.wildcards.pool,
    "options": settings["options"],
}
# Positions index the pool; store indices into its images.
artifacts.write_pseudo_labels(snakemake.output[0], pool[positions], labels, meta)
