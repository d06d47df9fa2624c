"""Every file name a run writes, in one place, and the version of the JSON artifacts' layout."""

from __future__ import annotations

SCHEMA_VERSION = 1  # carried by every JSON artifact as "schema_version"

MANIFEST = "manifest.json"  # written last: its presence marks a complete result folder
STEP = "step.json"  # a study step's key and artifact digests
REPORT = "report.html"

# detect
SCORES = "scores.safetensors"
NEURONS = "neurons.json"
CENTROIDS = "centroids.safetensors"
LAYERS_FIGURE = "layers.png"

# neuron sets of a controlled experiment
INTERVENTION = "intervention.json"
BASELINE = "baseline.json"

# latent
LATENT = "latent.json"
LATENT_PCA = "latent.safetensors"  # 2-D PCA points per layer and language
PCA_FIGURE = "pca.png"
CENTROID_FIGURE = "centroid_similarity.png"
MKNN_FIGURE = "mknn.png"
SIMILARITY_FIGURE = "similarity.png"
ACT_SIMILARITY_FIGURE = "act_similarity.png"
LATENT_UNITS = "latent_units.safetensors"  # per-pair values per layer, for recomputing intervals

# ablate
ABLATION = "ablation.json"
ABLATION_MKNN_FIGURE = "ablation_mknn.png"
ABLATION_GAP_FIGURE = "ablation_similarity_gap.png"
ABLATION_ACT_FIGURE = "ablation_act_similarity.png"
ABLATION_UNITS = "ablation_units.safetensors"  # per-pair values per layer and condition

# characterisation
SPECIFICITY = "specificity.json"
SPECIFICITY_TENSORS = "specificity.safetensors"
SPECIFICITY_FIGURE = "specificity.png"
OVERLAP = "overlap.json"
OVERLAP_FIGURE = "overlap.png"

# study
FINDINGS = "findings.json"

# study data steps
TRAIN, TEST, NONPARALLEL = "train.jsonl", "test.jsonl", "nonparallel.jsonl"

# steering sweep
SWEEP = "sweep.json"
SWEEP_ROWS = "sweep.jsonl"  # one row per prompt and condition (normal, factor x top-k)
SWEEP_FIGURE = "sweep.png"

# steer: the output language under steering
STEER = "steer.json"
STEER_ROWS = "steer.jsonl"  # one row per prompt and condition
STEER_FIGURE = "steer.png"


def rows(task: str) -> str:
    """Per-item rows of a downstream task (qa, mc, output_lang): one JSON object per line."""
    return f"{task}.jsonl"


def summary(task: str) -> str:
    """Settings and per-condition results of a downstream task."""
    return f"{task}.json"


def figure(task: str) -> str:
    return f"{task}.png"


# neuron pages
NEURON_INDEX = "index.html"  # the sortable, filterable table of every neuron
NEURON_ROWS = "neurons.jsonl"  # one card's data per line
NEURON_CARDS = "n"  # the folder of one page per neuron


def neuron_card(layer: int, neuron: int) -> str:
    """The page of one neuron, relative to the neuron-pages folder."""
    return f"{NEURON_CARDS}/{layer}_{neuron}.html"


# the activation store of a study (docs/method.md section 10), a folder inside the run directory
STORE = "store"

# compare-methods
METHODS = "methods.json"
METHODS_FIGURE = "methods.png"

# several models compared: a study of several models (RUN/) and `compare`
MODELS = "models.json"
MODELS_MKNN_FIGURE = "models_mknn.png"
MODELS_GAP_FIGURE = "models_gap.png"
MODELS_LAYERS_FIGURE = "models_layers.png"

# finetune (docs/method.md section 12): transfer-neuron-targeted fine-tuning
FINETUNE = "finetune.json"  # before / after measures, the loss curve, the trainable parameter counts
DELTA = "delta.safetensors"  # the changed slices (or LoRA A / B) and the base model's key; written last
LOSS_FIGURE = "loss.png"
CHECKPOINT = "checkpoint.safetensors"  # trainable tensors, optimizer state, step and RNG (for --resume)
