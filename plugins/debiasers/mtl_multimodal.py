"""mtl-multimodal: the seed report's multi-task loss for the LSTM-CNN, L_Fus + a1 L_CNN + a2 L_LSTM.

The report (``shared/seeds/000``, Que-1, "Network Architecture (LSTM-CNN + MTL)"): "All the
loss functions are cross entropy loss function and the combination of all the three losses
are backpropagated through the network", ``L_MML = L_Fus + alpha_1 L_CNN + alpha_2 L_LSTM``,
each ``L = CE(Z, y)`` on the fusion, image and text heads' logits (``plugins.models.lstm_cnn``).
The same loss form is Wang, Tran & Feiszli 2020's (Gradient-Blending, CVPR) weighted sum of
uni-modal and fused losses, whose point is that the weights change how much each branch
learns: the knob the multimodal suite turns.

``a1 = a2 = 0`` is the report's single-head network: only ``L_Fus`` is minimised, the two
branch heads get no gradient, and training is bit for bit a plain cross-entropy training of
``forward(x, text)`` (``tests/test_multimodal.py``). A term whose weight is 0 is left out of the
loss rather than multiplied by 0, which is what makes that exact. The weights are stored in
the model's ``head_weights`` buffer (``[1, a1, a2]``), so evaluators score only trained heads.

Training is the shared loop (``benchmark.kit.training``: Adam, lr 1e-3, 5 epochs, batch 64 by
default), with each batch's captions taken from the training split by row; the report's own
optimiser and epochs are not stated in its text.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import NonNegativeFloat
from torch import nn

from benchmark.kit.training import Batch, train_loop
from benchmark.modalities import IMAGE, TEXT, text_of
from benchmark.specs import DebiaserSpec, Split
from plugins.debiasers.declaring import debiaser_spec
from plugins.models.lstm_cnn import MODALITY_HEADS


def train_mtl_multimodal(
    model: nn.Module,
    data: Split,
    *,
    seed: int,
    a1: NonNegativeFloat = 1.0,
    a2: NonNegativeFloat = 1.0,
    **training: Any,
) -> nn.Module:
    """Minimise ``CE(Z_Fus) + a1 CE(Z_CNN) + a2 CE(Z_LSTM)`` over the training split."""
    if not hasattr(model, "branch_logits"):
        raise ValueError(
            "mtl-multimodal: the model has no branch_logits(x, text); it trains models with "
            f"per-modality heads ('{MODALITY_HEADS}', such as lstm-cnn)"
        )
    for name, weight in (("a1", a1), ("a2", a2)):
        if not weight >= 0:
            raise ValueError(f"mtl-multimodal: {name} must be a non-negative number, got {weight}")
    text = text_of(data, "mtl-multimodal training split")
    weights = {"image": float(a1), "text": float(a2)}
    cross_entropy = nn.functional.cross_entropy

    def step(batch: Batch) -> torch.Tensor:
        logits = model.branch_logits(batch.x, text[batch.index])
        loss = cross_entropy(logits["fusion"], batch.y)
        for head, weight in weights.items():
            if weight > 0:
                loss = loss + weight * cross_entropy(logits[head], batch.y)
        return loss

    with torch.no_grad():
        model.head_weights.copy_(torch.tensor([1.0, a1, a2]))
    return train_loop(model, data, step, seed=seed, **training)


DESCRIPTION = (
    "the seed report's MTL loss for multimodal heads: CE(fusion) + a1 CE(image head) + "
    "a2 CE(text head); a1 = a2 = 0 is the single-head network"
)


def specs() -> list[DebiaserSpec]:
    """``mtl-multimodal``, for ``plugins.debiasers`` to register."""
    return [
        debiaser_spec(
            "mtl-multimodal",
            train_mtl_multimodal,
            DESCRIPTION,
            requires=(MODALITY_HEADS,),
            modalities=(IMAGE, TEXT),
        )
    ]
