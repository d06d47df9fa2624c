"""transfer-neurons: find and control the neurons that move multilingual LLM representations
between language-specific spaces and a shared semantic space (Tezuka & Inoue, EMNLP 2025)."""

__version__ = "0.1.0"

from transfer_neurons.analyses.detect import Detection, default_layers, detect
from transfer_neurons.artifacts.neurons import NeuronSet, read_neurons
from transfer_neurons.choices import Baseline, NeuronType, Positions
from transfer_neurons.data.pairs import ParallelData, read_pairs
from transfer_neurons.errors import InputError
from transfer_neurons.hooks.capture import capture
from transfer_neurons.hooks.generation import generate
from transfer_neurons.hooks.interventions import Intervention, apply_intervention
from transfer_neurons.model.adapters import ADAPTERS, Adapter, adapter_for
from transfer_neurons.model.loading import LoadedModel, load_model
from transfer_neurons.study.tables import load_run

__all__ = [
    "ADAPTERS",
    "Adapter",
    "Baseline",
    "Detection",
    "InputError",
    "Intervention",
    "LoadedModel",
    "NeuronSet",
    "NeuronType",
    "ParallelData",
    "Positions",
    "adapter_for",
    "apply_intervention",
    "capture",
    "default_layers",
    "detect",
    "generate",
    "load_model",
    "load_run",
    "read_neurons",
    "read_pairs",
]
