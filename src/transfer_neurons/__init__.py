"""transfer-neurons: find and control the neurons that move multilingual LLM representations
between language-specific spaces and a shared semantic space (Tezuka & Inoue, EMNLP 2025)."""

__version__ = "0.1.0"

from transfer_neurons.analyses.detect import Detection, default_layers, detect
from transfer_neurons.artifacts.neurons import NeuronSet, read_neurons
from transfer_neurons.choices import Baseline, NeuronType, Positions
from transfer_neurons.data.pairs import ParallelData, read_pairs
from transfer_neurons.errors import InputError
from transfer_neurons.hooks.capture import capture
from transfer_neurons.model.adapters import ADAPTERS, Adapter, adapter_for
from transfer_neurons.model.loading import LoadedModel, load_model

__all__ = [
    "ADAPTERS",
    "Adapter",
    "Baseline",
    "Detection",
    "InputError",
    "LoadedModel",
    "NeuronSet",
    "NeuronType",
    "ParallelData",
    "Positions",
    "adapter_for",
    "capture",
    "default_layers",
    "detect",
    "load_model",
    "read_neurons",
    "read_pairs",
]
