"""Van Looveren & Klaise (2021): counterfactuals guided by class prototypes, batched.

The loss of a perturbation ``delta`` (``x' = x + delta``, kept in [0, 1]):

    c * L_pred + beta * ||delta||_1 + ||delta||_2^2 + gamma * ||x' - AE(x')||^2
      + theta * ||ENC(x') - proto_t||^2

``L_pred = max(f_o(x') - max_{j != o} f_j(x'), -kappa)`` on probabilities (towards a given
target ``t``: ``max(max_{j != t} f_j(x') - f_t(x'), -kappa)``); ``proto_j`` is the mean
encoding of the ``k`` training images the model assigns to class ``j`` that are nearest to
``ENC(x)``, and the target of "any other class" is the class of the nearest prototype (the
paper's choice: the prototype term says where to go, which is why the paper can drop
``L_pred``, c = 0). ``c`` is bisected per image like Wachter's lambda, upwards when nothing was
found. Adam replaces the paper's FISTA (the L1 term by its subgradient): the batch then shares
one optimiser whose state is per pixel, so images stay independent.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.kit.autoencoders import ConvAutoencoder
from benchmark.kit.counterfactual_search import accepted, mark_not_found, predictions
from benchmark.specs import ANY_OTHER_CLASS


def encodings(encoder: ConvAutoencoder, x: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([encoder.encode(part) for part in x.split(chunk)])


def class_prototypes(
    z: torch.Tensor, train_z: torch.Tensor, train_class: torch.Tensor, classes: int, k: int
) -> torch.Tensor:
    """``(N, classes, D)``: per image and class, the mean of the class's ``k`` encodings nearest
    to the image's (NaN rows for a class the model assigns no training image to)."""
    out = torch.full((len(z), classes, z.shape[1]), float("nan"), device=z.device)
    for c in range(classes):
        members = train_z[train_class == c]
        if len(members) == 0:
            continue
        d = torch.cdist(z, members)
        _, index = d.topk(min(k, len(members)), dim=1, largest=False)
        out[:, c] = members[index].mean(1)
    return out


def prediction_loss(
    probs: torch.Tensor, goal: torch.Tensor, original: torch.Tensor, kappa: float
) -> torch.Tensor:
    """The paper's hinge: positive while the model still prefers the original class (or, for a
    given target, any class over the target)."""
    towards_target = goal != ANY_OTHER_CLASS
    keep = torch.where(towards_target, goal, original).view(-1, 1)
    own = probs.gather(1, keep).squeeze(1)
    rest = probs.scatter(1, keep, -1.0).max(1).values
    gap = torch.where(towards_target, rest - own, own - rest)
    return gap.clamp(min=-kappa)


@torch.enable_grad()  # a caller's no_grad must not stop the search
def prototype_counterfactuals(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    autoencoder: ConvAutoencoder,
    train_x: torch.Tensor,
    *,
    k: int = 20,
    c: float = 1.0,
    beta: float = 0.1,
    gamma: float = 100.0,
    theta: float = 100.0,
    kappa: float = 0.0,
    search_steps: int = 5,
    steps: int = 100,
    lr: float = 0.01,
) -> torch.Tensor:
    """The counterfactuals (NaN where none was found); see the module docstring."""
    original = predictions(model, x)
    classes = int(model(x[:1]).shape[1]) if len(x) else 0
    train_class = predictions(model, train_x)
    z = encodings(autoencoder, x)
    protos = class_prototypes(z, encodings(autoencoder, train_x), train_class, classes, k)
    distance = (protos - z[:, None]).norm(dim=2)  # (N, classes), NaN where no prototype
    distance = torch.nan_to_num(distance, nan=float("inf"))
    others = distance.scatter(1, original.view(-1, 1), float("inf"))
    goal_class = torch.where(target == ANY_OTHER_CLASS, others.argmin(1), target)
    proto = protos[torch.arange(len(x), device=x.device), goal_class]
    has_proto = torch.isfinite(proto).all(1)
    proto = torch.nan_to_num(proto)
    found = accepted(original, target, original)
    best = x.detach().clone()
    best_dist = torch.where(found, 0.0, float("inf")).to(x)
    c_now = torch.full((len(x),), float(c), device=x.device)
    low = torch.zeros_like(c_now)
    high = torch.full_like(c_now, float("inf"))
    todo = ~found & has_proto
    for _ in range(search_steps):
        rows = todo.nonzero().view(-1)
        if len(rows) == 0:
            break
        x_r, t_r, o_r, c_r, p_r = x[rows], target[rows], original[rows], c_now[rows], proto[rows]
        delta = torch.zeros_like(x_r, requires_grad=True)
        optimiser = torch.optim.Adam([delta], lr=lr)
        success = torch.zeros(len(rows), dtype=torch.bool, device=x.device)
        for _ in range(steps):
            x_cf = (x_r + delta).clamp(0, 1)
            logits = model(x_cf)
            flat = (x_cf - x_r).flatten(1)
            elastic = beta * flat.abs().sum(1) + flat.square().sum(1)
            with torch.no_grad():
                ok = accepted(logits.argmax(1), t_r, o_r)
                better = ok & (elastic < best_dist[rows])
                best[rows[better]] = x_cf.detach()[better]
                best_dist[rows[better]] = elastic.detach()[better]
                success |= ok
            loss = (
                c_r * prediction_loss(logits.softmax(1), t_r, o_r, kappa)
                + elastic
                + gamma * (x_cf - autoencoder(x_cf)).flatten(1).square().sum(1)
                + theta * (autoencoder.encode(x_cf) - p_r).square().sum(1)
            ).sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        # found: try a smaller c (less pull from the classifier); not found: a larger one
        high[rows] = torch.where(success, c_r, high[rows])
        low[rows] = torch.where(success, low[rows], c_r)
        bisect = (low[rows] + high[rows]) / 2
        c_now[rows] = torch.where(torch.isfinite(high[rows]), bisect, c_r * 10)
    return mark_not_found(x, best, torch.isfinite(best_dist)).detach()
