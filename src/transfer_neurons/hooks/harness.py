"""lm-evaluation-harness integration: run any harness task under a neuron intervention.

lm-eval's own `steered` model (PyPI 0.4.x) knows only the `add` and `clamp` actions, which cannot
scale a set of neurons. Importing this module registers a harness model named
`transfer-neurons` that reads the files written by `transfer-neurons export-steering` (the
`multiply` format of the Transfer Neurons authors' harness fork: a [1, m] factor vector per
hookpoint `layers.{l}.mlp.act_fn`) and multiplies those outputs at every position:

    transfer-neurons harness run --model transfer-neurons \
        --model_args pretrained=MODEL,steer_path=steer.pt --tasks TASK
"""

from __future__ import annotations

from functools import partial

import torch
from lm_eval.api.registry import register_model
from lm_eval.models.hf_steered import SteeredModel
from lm_eval.models.huggingface import HFLM


@register_model("transfer-neurons")
class NeuronSteeredModel(SteeredModel):
    """lm-eval's steered HF model with a `multiply` action (per-neuron activation factors)."""

    def __init__(self, pretrained: str, steer_path: str, device: str | None = None, **kwargs) -> None:
        HFLM.__init__(self, pretrained=pretrained, device=device, **kwargs)
        config = torch.load(steer_path, weights_only=True)
        self.hook_to_steer = {}
        for hookpoint, entry in config.items():
            if entry.get("action") != "multiply":
                action = entry.get("action")
                raise ValueError(f"{steer_path}: hookpoint {hookpoint} has action {action!r}, not 'multiply'")
            factors = entry["steering_vector"].to(self.device, self.model.dtype)
            self.hook_to_steer[hookpoint] = partial(torch.mul, other=factors)
