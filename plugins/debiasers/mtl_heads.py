"""Multi-task heads (``mtl-heads``): the MTL debiaser of the seed report (``shared/seeds/000``,
Que-2, "Model and Loss techniques for bias mitigation").

The report puts three classification heads on a shared backbone and trains each with a
different loss, "L1, L2 and L3 are CrossEntropyLoss, KL Divergence Loss, L2Loss ... L_MTL =
L1 + L2 + L3"; at test time the heads are ensembled "by taking the average logits". Different
losses pull the heads towards different solutions over the same features, so the ensemble
leans less on one head's shortcut (its DOB drops from 0.087 to 0.069 in the report's table).

What the KL and L2 terms apply to is not in the report text; the report's code settles it
(github.com/nirbhay-design/sem-8-assn, ``DAI/DAI_Assn2/que2_pyraMTL.py``, class ``MTLLoss``):

* ``self.l1 = nn.CrossEntropyLoss()``, ``self.l2 = nn.KLDivLoss()``, ``self.l3 =
  nn.MSELoss()``; ``forward(x1, x2, x3, t)`` returns ``l1(x1, t) + l2(log_softmax(x2),
  onehot(t)) + l3(softmax(x3), onehot(t))`` ("applying kldiv in x2, ce on x1, and l2 on x3").

So each loss belongs to one head and compares it with the label, not with the other heads:
head 1 cross-entropy on its logits; head 2 KL(onehot(y) || softmax(z_2)); head 3 squared error
between softmax(z_3) and onehot(y) (a Brier score). Both ``nn.KLDivLoss()`` and
``nn.MSELoss()`` use their default ``reduction="mean"``, an average over all N*K elements; we
keep that scaling, so the KL term equals cross-entropy / K and the L2 term is Brier / K. With
``heads`` other than 3 the losses cycle CE, KL, L2 over the heads. The weights ``ce_weight``,
``kl_weight`` and ``l2_weight`` (default 1, as in the report) scale the three terms.

Deviations, both to fit any model of this benchmark: the heads are linear layers on the model's
own bottleneck (the input of its final ``nn.Linear``, see ``plugins.models.bottleneck``; so the
debiaser requires a model that provides ``linear-head``), where the report's code adds a
128-unit projection and MLP heads of widths 64-32, 64 and 32; and training uses the shared
defaults (Adam, lr 1e-3, 5 epochs, batch 64) instead of the report's SGD for 40 epochs.

``prepare`` swaps the final linear layer for ``MultiHeadClassifier`` and gives the model the
multi-head contract: ``head_logits(x) -> (H, N, K)`` and ``forward(x)`` = mean over heads.
Heads are ``nn.Linear`` layers initialised independently (PyTorch's default init drawn from the
seeded global generator), so they start different and the whole model is deterministic.
"""

from __future__ import annotations

import types
from typing import Any

import torch
from pydantic import PositiveInt
from torch import nn

from benchmark.kit.training import Batch, train_loop
from benchmark.specs import DebiaserSpec, Split
from plugins.debiasers.declaring import debiaser_spec
from plugins.models.bottleneck import (
    LINEAR_HEAD,
    classifier_path,
    forward_with_features,
    replace_classifier,
)

LOSSES: tuple[str, ...] = ("ce", "kl", "l2")
"""Loss of head ``h`` is ``LOSSES[h % 3]``: the report's order (head 1 CE, 2 KL, 3 L2)."""


class MultiHeadClassifier(nn.Module):
    """``heads`` independent linear classifiers over the same feature vector."""

    def __init__(self, in_features: int, num_classes: int, heads: int = 3) -> None:
        super().__init__()
        if not isinstance(heads, int) or heads < 1:
            raise ValueError(f"heads must be a positive integer, got {heads!r}")
        self.heads = nn.ModuleList(nn.Linear(in_features, num_classes) for _ in range(heads))

    def all_logits(self, features: torch.Tensor) -> torch.Tensor:
        """``(H, N, K)``: every head's logits."""
        return torch.stack([head(features) for head in self.heads])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """The ensemble: logits averaged over heads, as the report evaluates it."""
        return self.all_logits(features).mean(dim=0)


def _multi_head_path(model: nn.Module) -> str:
    for name, module in model.named_modules():
        if isinstance(module, MultiHeadClassifier):
            return name
    raise ValueError(f"{type(model).__name__} has no MultiHeadClassifier: call prepare() first")


def _head_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``(H, N, K)`` logits of every head from one forward pass of the shared backbone."""
    path = _multi_head_path(model)
    _, features = forward_with_features(model, x, layer=path)
    return model.get_submodule(path).all_logits(features)


def prepare_mtl_heads(
    model: nn.Module, num_classes: int, *, heads: int = 3, **_params: Any
) -> nn.Module:
    """Replace the final linear layer of ``model`` (in place) by ``heads`` linear heads and
    attach ``head_logits``. Other debiaser parameters are accepted and ignored."""
    old = model.get_submodule(classifier_path(model))
    # drawn on the CPU like the rest of the model, then put where the old classifier was
    head = MultiHeadClassifier(old.in_features, num_classes, heads)
    replace_classifier(model, head.to(device=old.weight.device, dtype=old.weight.dtype))
    # A method on the instance, not a wrapper module: submodule paths (CAM target layers) and
    # the rest of the architecture stay exactly as the model author named them.
    model.head_logits = types.MethodType(_head_logits, model)
    return model


def mtl_loss(
    head_logits: torch.Tensor,
    y: torch.Tensor,
    *,
    ce_weight: float = 1.0,
    kl_weight: float = 1.0,
    l2_weight: float = 1.0,
) -> torch.Tensor:
    """The report's ``L_MTL`` over ``(H, N, K)`` head logits; head ``h`` gets ``LOSSES[h % 3]``.

    ``ce``: mean cross-entropy. ``kl``: ``KL(onehot(y) || softmax(z))`` summed over classes and
    divided by N*K (``nn.KLDivLoss()``'s default ``mean`` reduction, written out to avoid its
    deprecation warning). ``l2``: mean over N*K of ``(softmax(z) - onehot(y))**2``.
    """
    num_classes = head_logits.shape[-1]
    onehot = nn.functional.one_hot(y, num_classes).to(head_logits.dtype)
    weights = {"ce": ce_weight, "kl": kl_weight, "l2": l2_weight}
    total = head_logits.new_zeros(())
    for h, logits in enumerate(head_logits):
        kind = LOSSES[h % len(LOSSES)]
        if kind == "ce":
            term = nn.functional.cross_entropy(logits, y)
        elif kind == "kl":
            log_probs = nn.functional.log_softmax(logits, dim=1)
            term = nn.functional.kl_div(log_probs, onehot, reduction="sum") / onehot.numel()
        else:
            term = nn.functional.mse_loss(nn.functional.softmax(logits, dim=1), onehot)
        total = total + weights[kind] * term
    return total


def train_mtl_heads(
    model: nn.Module,
    data: Split,
    *,
    seed: int,
    heads: PositiveInt = 3,
    ce_weight: float = 1.0,
    kl_weight: float = 1.0,
    l2_weight: float = 1.0,
    **training: Any,
) -> nn.Module:
    """Train the prepared multi-head model on ``mtl_loss``; returns it in eval mode.

    A model that was not prepared (a direct call outside the runner) is prepared here, with
    the class count read from its final linear layer.
    """
    if not any(isinstance(m, MultiHeadClassifier) for m in model.modules()):
        num_classes = model.get_submodule(classifier_path(model)).out_features
        model = prepare_mtl_heads(model, num_classes, heads=heads)
    found = len(model.get_submodule(_multi_head_path(model)).heads)
    if found != heads:
        raise ValueError(f"model has {found} heads but heads={heads}: prepare with the same params")

    def step(batch: Batch) -> torch.Tensor:
        return mtl_loss(
            model.head_logits(batch.x),
            batch.y,
            ce_weight=ce_weight,
            kl_weight=kl_weight,
            l2_weight=l2_weight,
        )

    return train_loop(model, data, step, seed=seed, **training)


DESCRIPTION = (
    "three linear heads on the bottleneck trained with CE, KL and L2 "
    "losses; predicts with their logit average (seed report 000)"
)

# the heads replace the model's final linear layer and read its input
REQUIRES = frozenset({LINEAR_HEAD})


def specs() -> list[DebiaserSpec]:
    """The ``mtl-heads`` debiaser, for ``plugins.debiasers`` to register."""
    return [
        debiaser_spec(
            "mtl-heads",
            train_mtl_heads,
            DESCRIPTION,
            requires=REQUIRES,
            provides={"multi_head"},
            prepare=prepare_mtl_heads,
        )
    ]
