# Logs and a GPU slot first: importing TensorFlow already prints, and picks its GPUs.
from selfsup.jobs import start_training_job

start_training_job(snakemake.log[0])

from pathlib import Path

from selfsup import artifacts, training
from selfsup.jobs import resume_dir, write_json
from selfsup.stages.self_training import self_training_round

# One script for both rules: a round (threshold given) trains a teacher and writes the
# pseudo-labels it accepts; the student (no threshold) is the run whose metrics count.
seed = int(snakemake.wildcards.seed)
settings = snakemake.params.settings
threshold = snakemake.params.threshold
training.configure(snakemake.params.tf_threads, seed, settings["deterministic"])
first_output = Path(snakemake.output[0])
# Rounds share their run's folder, so each keeps its resume state in a folder of its own.
state_dir = first_output.parent if threshold is None else first_output.parent / first_output.stem
metrics, history, accepted = self_training_round(
    data_path=snakemake.input.data,
    split_path=snakemake.input.split,
    pool_path=snakemake.input.pool,
    earlier_rounds=list(snakemake.input.rounds),
    encoder_path=snakemake.input.get("encoder"),
    encoder_spec=snakemake.params.encoder,
    settings=settings,
    budget=snakemake.wildcards.budget,
    seed=seed,
    threshold=threshold,
    resume_dir=resume_dir(state_dir, list(snakemake.params), snakemake.input),
)
history.to_csv(snakemake.output.history, index=False)
meta = {
    "study": snakemake.params.study,
    "method": snakemake.wildcards.method,
    "pool": snakemake.wildcards.pool,
    "budget": snakemake.wildcards.budget,
    "seed": seed,
}
if accepted is None:
    metrics.update(meta, seed=seed)
    write_json(snakemake.output.metrics, metrics)
else:
    artifacts.write_teacher_labels(
        snakemake.output.labels,
        accepted.pop("indices"),
        accepted.pop("labels"),
        accepted.pop("confidences"),
        int(snakemake.wildcards.round),
        {
            **meta,
            "threshold": threshold,
            **{key: value for key, value in accepted.items() if value is not None},
        },
    )
