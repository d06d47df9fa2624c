"""Closed-form transfer-neuron scores (docs/method.md section 3): plain functions over tensors, no model code.

For a sentence with pre-MLP residual ``r``, activations ``a_i`` and effective value vectors
``u_i = s * (g * v_i)`` (``s = 1/rms`` and ``g`` the gain of a post-MLP norm; both 1 otherwise),
the change in cosine similarity to a centroid ``c`` caused by neuron i's own contribution is

    cos(r + a_i u_i, c) - cos(r, c)
      = (r.c + a_i u_i.c) / (|c| sqrt(|r|^2 + 2 a_i r.u_i + a_i^2 |u_i|^2)) - r.c / (|c| |r|)

computed for all neurons at once from one [B, d] x [d, m] product per layer. The gain is folded
into ``r`` and ``c`` (``r.(g v_i) = (g r).v_i``), so the value vectors are used as the model stores
them (a view of the down projection's weight, cast to float32 per batch, never copied for good).

The centred variant (docs/method.md section 3) replaces ``r`` and ``c`` by ``r - mu`` and ``c - mu`` for a
reference mean ``mu`` (the contributions ``a_i u_i`` are unchanged), which is the same formula
with shifted inputs: a few massive hidden dimensions shared by every state then no longer
dominate the cosine.
"""

from __future__ import annotations

import torch


def effective_values(values: torch.Tensor, gain: torch.Tensor | None) -> torch.Tensor:
    """Rows ``g * v_i`` [m, d] in float32 (the value vectors themselves when there is no post-MLP norm)."""
    values = values.float()
    return values if gain is None else values * gain.to(values.device)


class LayerScorer:
    """Score terms of one layer for one target centroid; the per-neuron constants are computed once.

    values: [m, d] value vectors ``v_i`` as rows, any dtype and device (computations run there, in
    float32/float64); gain: [d] post-MLP norm gain or None; c: [d] target centroid; center: [d]
    reference mean ``mu`` subtracted from ``r`` and ``c`` (in float64) before the cosine, or None.
    """

    def __init__(
        self, values: torch.Tensor, gain: torch.Tensor | None, c: torch.Tensor, center: torch.Tensor | None = None
    ) -> None:
        self.values = values
        self.device = values.device
        self.gain = None if gain is None else gain.float().to(self.device)
        self.center = None if center is None else center.double().to(self.device)
        self.c = (c if self.center is None else c.double().to(self.device) - self.center).float().to(self.device)
        v = values.float()
        gc = self.c if self.gain is None else self.gain * self.c
        squares = v.pow(2)
        self.uc = (v @ gc).double()  # [m]: (g v_i).c
        self.uu = (squares.sum(-1) if self.gain is None else squares @ self.gain.pow(2)).double()  # [m]: |g v_i|^2

    def deltas(self, r: torch.Tensor, a: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """``cos(r_k + a_ki u_ki, c) - cos(r_k, c)`` for every sentence k and neuron i, [B, m] float64.

        r: [B, d] pre-MLP residuals; a: [B, m] activations; scale: [B] per-sentence factor s. The
        result is on r's device. Dot products run in float32, differences of cosines in float64.
        """
        out_device = r.device
        r, a, scale = (t.to(self.device).float() for t in (r, a, scale))
        if self.center is not None:
            r = (r.double() - self.center).float()
        rg = r if self.gain is None else r * self.gain
        s = scale.double()[:, None]  # [B, 1]
        rc = (r @ self.c).double()  # [B]
        r2 = r.pow(2).sum(-1).double()  # [B]
        ru = s * (rg @ self.values.float().t()).double()  # [B, m]
        uc = s * self.uc[None, :]
        uu = s.pow(2) * self.uu[None, :]
        a = a.double()
        c_norm = self.c.double().norm()
        moved = (rc[:, None] + a * uc) / (c_norm * (r2[:, None] + 2 * a * ru + a * a * uu).clamp_min(0).sqrt())
        base = rc / (c_norm * r2.sqrt())
        return (moved - base[:, None]).to(out_device)


def rank_neurons(scores: torch.Tensor, layers: list[int], top_n: int) -> list[tuple[int, int, float]]:
    """Top-n (layer, neuron, score) over the candidate layers: score descending, ties by (layer, neuron).

    NaN scores (neurons a method leaves unscored, e.g. LAPE's filter) never rank, so fewer than
    top_n may come back."""
    candidate = scores[layers].reshape(-1)
    order = torch.sort(-candidate.double(), stable=True).indices  # NaN sorts last
    order = order[~torch.isnan(candidate[order])][:top_n]
    width = scores.shape[1]
    return [(layers[int(k) // width], int(k) % width, float(candidate[k])) for k in order]
