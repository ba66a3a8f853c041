"""FixMatch (Sohn et al. 2020) as a downstream protocol: each step a labeled batch and
`unlabeled_ratio` times as many pool images; the weak view's confident prediction is the
strong view's label (selfsup.fixmatch holds the loss, the training step and the weight
average; selfsup.randaugment the strong view). From scratch, and with `from_pretext`
from every pretext encoder too (SelfMatch's question: does a pretrained start help?).

References, read before writing: google-research/fixmatch (fixmatch.py: the flags,
`train_kimg`, `report_kimg`, and libml/train.py's report of the median of the last 20
accuracies); USB, microsoft/Semi-supervised-learning (semilearn/algorithms/fixmatch,
config/classic_cv/fixmatch/fixmatch_cifar10_40_0.yaml). docs/methods.md lists every
deviation. The options' defaults are the references' (their names in comments).
"""

from __future__ import annotations

import math

from selfsup.protocols.base import Job

READS_POOL = True
RULE = "downstream"
SECTION = "fixmatch"
TRAINING_SETTINGS = False  # its own optimizer, schedule, length and augmentation

THRESHOLD = 0.95  # tau: `confidence` of fixmatch.py, `p_cutoff` of USB's configs
UNLABELED_WEIGHT = 1.0  # lambda_u: `wu`, USB's `ulb_loss_ratio`
UNLABELED_RATIO = 7  # mu: `uratio`
LEARNING_RATE = 0.03
EMA_DECAY = 0.999  # `ema` of fixmatch.py, `ema_m` of USB's configs
OPTIONS = {
    # K: fixmatch.py trains 2^16 kimg of labeled images at batch 64, 2^20 steps (USB's
    # num_train_iter 1,048,576): far beyond a CPU; a study sets its own.
    "steps": 2**20,
    # Steps between evaluations of the weight average: fixmatch.py's report_kimg 64 at
    # batch 64. Each evaluation is one history row (an "epoch" of the progress line).
    "eval_every": 1024,
    "median_of": 20,  # the last evaluations whose median the run also reports (libml/train.py)
    "batch_size": 64,  # B: labeled images a step (`batch`)
    "unlabeled_ratio": UNLABELED_RATIO,  # mu: unlabeled images per labeled one in a step
    "threshold": THRESHOLD,  # tau
    "unlabeled_weight": UNLABELED_WEIGHT,  # lambda_u
    "ema_decay": EMA_DECAY,
    "weight_decay": 5e-4,  # wd: coupled L2 on kernels
    "learning_rate": LEARNING_RATE,  # lr, times cos(7 pi k / 16 K)
    "horizontal_flip": True,  # in the weak view; refused where a mirror changes the class
    "shift": 0.125,  # the weak view's largest translation, a fraction of the side
    "from_pretext": False,  # also start from every pretext encoder, next to from scratch
}


def starts(protocol: str, study: dict) -> tuple[bool, ...]:
    return (False, True) if (study.get(protocol) or {}).get("from_pretext") else (False,)


def settings(study: dict, protocol: str) -> dict:
    """Its section's options and what it shares with downstream's classifiers: the head,
    the feature layer, memory, precision and determinism (not epochs, optimizer or
    augmentation: it has its own)."""
    downstream = study["downstream"]
    shared = ("feature_layer", "head", "precision", "memory_limit_mb", "deterministic")
    return {**{key: downstream[key] for key in shared if key in downstream}, **study[protocol]}


def check_options(options: dict, pool_size: int, flip_changes_classes: bool = False, defaults=None) -> dict:
    """The options with defaults filled in; ValueError naming the key and the value for
    an unknown key, a value out of range, a pool smaller than one unlabeled batch, or a
    flip asked for where a flip changes the class (digits: 2 and 5 mirrored)."""
    defaults = OPTIONS if defaults is None else defaults
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)}; allowed: {', '.join(defaults)}")
    options = {**defaults, **options}

    def number(key, low, high, low_open=False, high_open=False):
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"{key}: expected a number, got {value!r}")
        if value < low or value > high or (low_open and value == low) or (high_open and value == high):
            left, right = "(" if low_open else "[", ")" if high_open else "]"
            raise ValueError(f"{key}: {value!r} must lie in {left}{low}, {high}{right}")

    def integer(key, low, why=""):
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{key}: expected an integer >= {low}{why}, got {value!r}")

    integer("unlabeled_ratio", 1, " (mu; the references use 7)")
    integer("batch_size", 1)
    integer("steps", 1)
    integer("eval_every", 1)
    integer("median_of", 1)
    number("threshold", 0.0, 1.0, low_open=True)
    number("unlabeled_weight", 0.0, math.inf, high_open=True)
    number("ema_decay", 0.0, 1.0, high_open=True)
    number("weight_decay", 0.0, math.inf, high_open=True)
    number("learning_rate", 0.0, math.inf, low_open=True, high_open=True)
    number("shift", 0.0, 0.5, high_open=True)
    for key in ("horizontal_flip", "from_pretext", *(k for k in defaults if isinstance(defaults[k], bool))):
        if not isinstance(options[key], bool):
            raise ValueError(f"{key}: expected true or false, got {options[key]!r}")
    if options["horizontal_flip"] and flip_changes_classes:
        raise ValueError(
            "horizontal_flip: a mirrored image of this dataset can be another class; set horizontal_flip: false"
        )
    if options["steps"] % options["eval_every"]:
        raise ValueError(
            f"steps: {options['steps']} is not a multiple of eval_every {options['eval_every']}; "
            "the run evaluates after every eval_every steps and at its end"
        )
    evaluations = options["steps"] // options["eval_every"]
    if options["median_of"] > evaluations:
        raise ValueError(
            f"median_of: {options['median_of']} evaluations, but steps / eval_every makes "
            f"{evaluations}; use median_of <= {evaluations}"
        )
    unlabeled_batch = options["unlabeled_ratio"] * options["batch_size"]
    if pool_size < unlabeled_batch:
        raise ValueError(
            f"unlabeled_ratio: {options['unlabeled_ratio']} x batch_size {options['batch_size']} = "
            f"{unlabeled_batch} unlabeled images a step, but the pool holds {pool_size}; lower "
            "unlabeled_ratio or batch_size, or use a larger pool"
        )
    return options


def check(study: dict, facts, chosen: list[str], defaults: dict | None = None) -> None:
    """The section of each chosen protocol (`defaults`: its options), filled in."""
    from selfsup.data import sources

    flip_changes_classes = not sources.get_source(facts.dataset).mirror_keeps_class
    for protocol in chosen:
        try:
            study[protocol] = check_options(
                study.get(protocol) or {}, facts.unlabeled, flip_changes_classes, defaults
            )
        except ValueError as err:
            raise ValueError(f"{protocol}.{err}") from None
        if study[protocol]["from_pretext"] and not study["pretext"]:
            raise ValueError(
                f"{protocol}.from_pretext: there is no pretext method to start from; add one under pretext"
            )


def check_models(study: dict, encoder, chosen: list[str]) -> None:
    pass  # its classifier is the supervised or finetune one, checked with the encoder


def stream_positions(count: int, batch: int, seed: int, stream: int, step: int):
    """Which of `count` examples batch `step` of a stream takes: the stream is an endless
    sequence of permutations, permutation p drawn from (seed, stream, p), cut into
    batches (a budget smaller than the batch repeats within one, as the references'
    repeated, shuffled labeled dataset does). A pure function of the step, so a resumed
    job draws the very batches an uninterrupted one does."""
    import numpy as np

    out, start = [], step * batch
    while len(out) < batch:
        permutation, offset = divmod(start + len(out), count)
        order = np.random.default_rng([seed, stream, permutation]).permutation(count)
        out.extend(order[offset : offset + batch - len(out)])
    return np.asarray(out, np.int64)


def train(job: Job, flexmatch: bool = False):
    """One FixMatch run (FlexMatch's with `flexmatch`): `steps` steps, the weight average
    evaluated on the test set every `eval_every` steps (history), then its final test
    accuracy (the headline, as every other protocol's: the model at the end) and the
    median of the last `median_of` evaluations (FixMatch's own report). Never the best
    evaluation: that selects on the test set."""
    import numpy as np
    import tensorflow as tf

    from selfsup import artifacts, downstream, encoders, fixmatch, training
    from selfsup import protocols as registry
    from selfsup.data.splits import drawn_budget, parse_budget
    from selfsup.inputs import DEFAULT_MEMORY_LIMIT_MB, _gather, batches
    from selfsup.report import comparisons
    from selfsup.stages import common

    options, seed, stream = job.settings, job.seed, job.stream
    info = artifacts.read_labels(job.data_path)
    split = artifacts.read_split(job.split_path)
    pool, part = artifacts.read_pool(job.pool_path)
    training.set_precision(options.get("precision", "float32"))
    pretrained = job.encoder_path is not None
    if pretrained:
        encoder, _ = encoders.read_encoder(job.encoder_path)
    else:
        encoder = encoders.build_encoder(
            job.encoder_spec["name"], info["image_shape"], **job.encoder_spec["options"]
        )
    num_classes = len(info["class_names"])
    classifier = downstream.build_classifier(
        encoder,
        num_classes,
        registry.classifier_protocol(options["protocol"], pretrained),
        feature_layer=options.get("feature_layer"),
        **options.get("head", {}),
    )
    batch, ratio = options["batch_size"], options["unlabeled_ratio"]
    if len(pool) < ratio * batch:
        raise ValueError(
            f"{options['protocol']}.unlabeled_ratio: {ratio} x batch_size {batch} unlabeled images a step, "
            f"but this pool holds {len(pool)}; lower unlabeled_ratio or batch_size, or use a larger pool"
        )
    limit = options.get("memory_limit_mb", DEFAULT_MEMORY_LIMIT_MB)
    labeled = drawn_budget(split, info["y_train"], job.budget, seed)
    y_train, y_test = info["y_train"], info["y_test"]
    labels = y_train[labeled].astype(np.int32)
    labeled_images, labeled_pos = common.load_pool(job.data_path, "train", labeled, limit)
    pool_images, pool_pos = common.load_pool(job.data_path, part, pool, limit)
    # True labels of the pool, only to measure the pseudo-labels (-1: unknown, as a
    # dataset's own unlabeled images and foreign images are).
    truth = np.full(len(pool), -1, np.int32)
    if part == "train":
        truth = y_train[pool].astype(np.int32)
        truth[np.isin(pool, split.foreign)] = -1

    steps_per_epoch = options["eval_every"]
    with tf.device("/cpu:0"):
        epoch_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")

    def load(step):
        picked = stream_positions(len(labeled), batch, seed, 0, int(step))
        slots = stream_positions(len(pool), ratio * batch, seed, 1, int(step))
        return (
            _gather(labeled_images, labeled_pos[picked]),
            labels[picked],
            _gather(pool_images, pool_pos[slots]),
            slots,
            truth[slots],
        )

    def read(step):
        x, y, u, slots, u_truth = tf.numpy_function(
            load, [step], (tf.uint8, tf.int32, tf.uint8, tf.int64, tf.int32), stateful=False
        )
        x.set_shape((batch, *info["image_shape"]))
        u.set_shape((ratio * batch, *info["image_shape"]))
        y.set_shape((batch,))
        slots.set_shape((ratio * batch,))
        u_truth.set_shape((ratio * batch,))
        return (tf.cast(x, tf.float32) / 255.0, y), (tf.cast(u, tf.float32) / 255.0, slots, u_truth)

    data = tf.data.Dataset.from_tensors(np.int64(0)).map(lambda _: epoch_counter.read_value())
    data = data.flat_map(
        lambda epoch: tf.data.Dataset.range(steps_per_epoch).map(lambda b: epoch * steps_per_epoch + b)
    )
    data = (
        data.map(read)
        .apply(tf.data.experimental.assert_cardinality(steps_per_epoch))
        .prefetch(tf.data.AUTOTUNE)
    )
    data.epoch_counter = epoch_counter

    status = (
        fixmatch.FlexMatchStatus(len(pool), num_classes, options["threshold"], options["warmup"])
        if flexmatch
        else None
    )
    model = fixmatch.FixMatchModel(
        classifier,
        normalize=split.normalization.apply,
        flip=options["horizontal_flip"],
        shift=options["shift"],
        threshold=options["threshold"],
        unlabeled_weight=options["unlabeled_weight"],
        weight_decay=options["weight_decay"],
        ema_decay=options["ema_decay"],
        flexmatch=status,
        seed=seed,
    )
    model.compile(
        optimizer=fixmatch.sgd(options["learning_rate"], options["steps"]),
        jit_compile=False,
    )

    def evaluate(images, where, y):
        data = batches(images, where, y, batch_size=256, normalization=split.normalization)
        return downstream.accuracy(classifier, data, y)

    test_images, test_pos = common.load_pool(job.data_path, "test", split.test, limit)
    y_eval = y_test[split.test]
    evaluation = fixmatch.AverageEvaluation(model, lambda: evaluate(test_images, test_pos, y_eval))
    test_batches = batches(test_images, test_pos, y_eval, batch_size=256, normalization=split.normalization)
    print(
        f"downstream {options['protocol']} ({'from a pretext encoder' if pretrained else 'from scratch'}): "
        f"{len(labeled)} labels, a pool of {len(pool)}, {options['steps']} steps of {batch} labeled and "
        f"{ratio * batch} unlabeled images, the weight average evaluated every {steps_per_epoch} steps",
        file=stream,
        flush=True,
    )
    history = training.fit(
        model,
        data,
        epochs=options["steps"] // steps_per_epoch,
        samples_per_epoch=steps_per_epoch * batch * (1 + ratio),
        extra_callbacks=[evaluation],
        resume_dir=job.resume_dir,
        stream=stream,
    )
    model.average.swap()  # the weight average is the model evaluated and kept
    accuracies = history["ema_test_accuracy"].to_numpy()
    probabilities = classifier.predict(
        batches(test_images, test_pos[:1], y_eval[:1], batch_size=1, normalization=split.normalization),
        verbose=0,
    )
    counts = downstream.count_params(classifier)
    metrics = {
        "protocol": options["protocol"],
        "budget": parse_budget(job.budget)[0],
        "draw": parse_budget(job.budget)[1],
        "n_labels": int(len(labeled)),
        "n_extra": int(len(pool)),
        "test_accuracy": float(accuracies[-1]),
        "n_test": int(len(y_eval)),
        "test_correct": comparisons.encode_correct(downstream.correct(classifier, test_batches, y_eval)),
        "test_accuracy_median": float(np.median(accuracies[-options["median_of"] :])),
        "median_of": int(min(options["median_of"], len(accuracies))),
        "train_accuracy": evaluate(labeled_images, labeled_pos, y_train[labeled]),
        "val_accuracy": None,
        "epochs_run": int(len(history)),
        "steps": int(len(history) * steps_per_epoch),
        "resumed_from_epoch": history.attrs["resumed_from_epoch"],
        "mask_rate": float(history["mask_rate"].iloc[-1]),
        "pseudo_label_accuracy": float(history["pseudo_label_accuracy"].iloc[-1]),
        **counts,
        **training.thread_settings(),
        "example": {
            "test_index": int(split.test[0]),
            "label": int(y_eval[0]),
            "probabilities": [float(p) for p in probabilities[0]],
        },
    }
    print(
        f"test accuracy {metrics['test_accuracy']:.4f} (weight average at the end; median of the last "
        f"{metrics['median_of']} evaluations {metrics['test_accuracy_median']:.4f})",
        file=stream,
        flush=True,
    )
    for images in (labeled_images, pool_images, test_images):
        common.close_pool(images)
    return metrics, history
