"""Group-balanced resampling (``resample``): a supervised debiaser that needs groups.

Every epoch draws as many rows as the training split holds, with replacement, row ``i`` with
probability proportional to ``1 / n(cell_i)``: each (class, group) cell is then drawn equally
often, and training is plain cross-entropy on those batches. This is the sampler of Sagawa,
Koh, Hashimoto & Liang (ICLR 2020; their code's ``--reweight_groups``, a
``WeightedRandomSampler`` over group counts), the baseline that Idrissi, Arjovsky, Pezeshki &
Lopez-Paz (CLeaR 2022, "RWG") found competitive with far more complex methods, and the way JTT's
reference code up-weights (it repeats rows).

It optimises the same objective as ``reweight`` in expectation; the difference is variance. On
colored-mnist at rho 0.99 the 40 bias-conflicting training images carry 80 % of the re-weighted
objective: with loss weights they appear in a batch one at a time, each with weight 80, and
Adam at lr 0.003 collapsed the seed CNN to a constant prediction on two of three seeds. Drawn
by the sampler instead (40 of the 50 non-empty cells are conflicting ones), they fill about 80 %
of every batch with weight 1 (see the README's
fairness results). The cost: the rare images are repeated dozens of times per epoch, so a model
that can memorise 40 images will.

Defaults: ``cell="class-group"`` (as ``reweight``; ``"group"`` for group ids that already
encode the label) and the shared training defaults (Adam, lr 1e-3, 5 epochs, batch 64). The
draw is seeded by the job's seed through the shared loop.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from benchmark.kit.training import Batch, train_loop
from benchmark.specs import DebiaserSpec, Split
from plugins.debiasers.declaring import debiaser_spec
from plugins.debiasers.reweight import Cell, cell_weights


def train_resample(
    model: nn.Module, data: Split, *, seed: int, cell: Cell = "class-group", **training: Any
) -> nn.Module:
    """Cross-entropy on cell-balanced batches drawn with replacement; returns the model in eval
    mode."""
    weights = cell_weights(data, cell, "resample")

    def step(batch: Batch) -> torch.Tensor:
        return nn.functional.cross_entropy(model(batch.x), batch.y)

    return train_loop(model, data, step, seed=seed, sampling_weights=weights, **training)


DESCRIPTION = (
    "group-balanced resampling: every (class, group) cell drawn equally often "
    "(Sagawa et al. 2020's sampler; Idrissi et al. 2022)"
)

REQUIRES = frozenset({"groups"})


def specs() -> list[DebiaserSpec]:
    """The ``resample`` debiaser, for ``plugins.debiasers`` to register."""
    return [debiaser_spec("resample", train_resample, DESCRIPTION, requires=REQUIRES)]
