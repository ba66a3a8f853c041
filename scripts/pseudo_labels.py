# Logs first. Rotation's pseudo-labels need no TensorFlow (selfsup.pretext imports lazily).
from selfsup.jobs import arguments, log_to

log_to(snakemake.log[0])

from selfsup.stages import pseudo_labels

pseudo_labels.job(**arguments(snakemake))
