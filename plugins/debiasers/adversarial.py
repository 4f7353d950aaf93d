"""Adversarial training (``adv-pgd``, ``adv-fgsm-rs``, ``trades``): training procedures that
make the classifier robust to small input perturbations instead of to a spurious attribute.

All three are unsupervised (they never read ``data.groups``) and run the shared loop
(``benchmark.kit.training``): only what a step minimises differs. The attacks are the kit's
(``benchmark.kit.attacks``: batched, seeded, batch-independent, never touching the model's
mode, its parameters' ``.grad`` or ``x``); ``tests/test_debiasers_adversarial.py`` holds the
procedures to their contracts (determinism, blindness to groups, robust accuracy above ERM's,
the guard's early stop, TRADES with ``beta = 0`` being plain cross-entropy).

* ``adv-pgd``: Madry, Makelov, Schmidt, Tsipras & Vladu, ICLR 2018, "Towards deep learning
  models resistant to adversarial attacks", Eq. 2.1: ``min E[max_{||d|| <= eps} CE(f(x+d),
  y)]``, the inner maximum approximated by PGD from a random start in the eps ball; the outer
  step is cross-entropy on the PGD examples alone. Reference: github.com/MadryLab/
  mnist_challenge (``train.py``, ``pgd_attack.py``: eps 0.3, 40 steps of 0.01, random start).
* ``adv-fgsm-rs``: Wong, Rice & Kolter, ICLR 2020, "Fast is better than free", Algorithm 3:
  ``delta ~ U[-eps, eps]``, one signed-gradient step of ``alpha = 1.25 eps`` from
  ``x + delta``, projected to the eps ball and the image box, then cross-entropy on it.
  The paper's MNIST setting: eps 0.3, alpha 0.375. Reference:
  github.com/locuslab/fast_adversarial (``CIFAR10/train_fgsm.py``: the attack and the
  ``--early-stop`` guard below).
* ``trades``: Zhang, Yu, Jiao, Xing, El Ghaoui & Jordan, ICML 2019, "Theoretically principled
  trade-off between robustness and accuracy": ``CE(f(x), y) + beta *
  KL(softmax f(x) || softmax f(x')) / batch``, ``x'`` by PGD on that KL from
  ``x + 0.001 N(0, 1)``. Reference: github.com/yaodongyu/TRADES (``trades.py``
  ``trades_loss``: ``nn.KLDivLoss(size_average=False)`` divided by ``len(x)``, ``x'``
  generated with the model in eval mode; ``train_trades_mnist.py``: eps 0.3, 40 steps of
  0.01).

**Train or eval mode while attacking.** As in each reference: ``adv-pgd`` and ``adv-fgsm-rs``
attack the model in train mode (Madry's TF model has no mode; Rice et al.'s
robust_overfitting and Wong's fast_adversarial call ``model.train()`` once per epoch and
attack in it, so dropout is active and batch-norm statistics update on the attack's forward
passes); ``trades`` attacks in eval mode and switches back to train mode for the update
(``trades_loss``'s ``model.eval()`` / ``model.train()``). The attacks never change the mode
themselves, so the update step always runs in train mode.

**The catastrophic-overfitting guard** (``adv-fgsm-rs``). FGSM training can collapse within an
epoch: the model becomes robust to the single step and not at all to PGD (Wong et al.).
Their remedy, kept here: after every epoch, measure PGD robust accuracy on
training images and stop when it dropped by more than ``guard_drop`` (0.2) from the previous
epoch's, keeping the weights of the previous epoch (``robust_acc - prev_robust_acc < -0.2``;
the first epoch is compared with 0, so it never stops). Deviations: the measurement uses a
fixed seeded subset of ``guard_rows`` (500) training rows instead of the epoch's first
minibatch (one batch's accuracy is too noisy a signal on small data), ``guard_steps`` (10)
PGD steps of ``2.5 eps / steps`` instead of 5 steps of 2/255, and the model in eval mode
(restored afterwards; the reference attacks in train mode). The per-epoch accuracies are
recorded on the model as the buffer ``adversarial_guard`` (``(epochs,)``, ``-1`` for epochs
never run: not NaN, so two identical runs have ``torch.equal`` state dicts) and the epoch whose
collapse stopped training as ``adversarial_stop`` (``-1``: ran to the end). ``prepare``
registers both, so the cached state dict carries them and loads into the same architecture;
``early_stop=False`` records without stopping.

**Randomness.** Random starts are the kit's, keyed by each image's pixels and a seed drawn
per training step from a stream of the job's seed (``stream_seed``): a rerun is bit-identical,
and an image gets a fresh start every time it is visited, as with the references' fresh
``torch.rand``. TRADES' ``0.001 N(0, 1)`` start comes from a seeded CPU generator, so it is
the same on every device.

Deviations shared by all three: the optimiser and schedule are the benchmark's (Adam, lr 1e-3,
batch 64, ``ADVERSARIAL_TRAINING``; the references: Adam 1e-4 for 100k steps (Madry), Adam
with a cyclic lr to 5e-3 (Wong), SGD 0.01 with step decay for 100 epochs (TRADES)). PGD's
default is 10 steps of ``2.5 eps / steps`` (the kit's default, Madry et al.'s rule) instead
of the references' 40 steps of 0.01: a quarter of the cost on a CPU, and the total path (2.5
eps) still crosses the ball; give ``steps=40, step_size=0.01`` to match them. L2 uses the
kit's normalised-gradient step and projection for all three (TRADES' L2 branch takes SGD
steps of ``2 eps / steps`` on the renormalised gradient: the same step direction).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Annotated, Any

import torch
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt
from torch import nn

from benchmark.kit.attacks import Norm, check_norm, fgsm, misclassified, pgd, random_start
from benchmark.kit.devices import device_of
from benchmark.kit.evaluation import eval_mode
from benchmark.kit.seeding import stream_seed
from benchmark.kit.training import Batch, TrainingParams, train_loop
from benchmark.specs import DebiaserSpec, Split
from plugins.debiasers.declaring import debiaser_spec

ADVERSARIAL_TRAINING = TrainingParams(optimizer="adam", lr=0.001, epochs=10, batch_size=64)
"""The adversarial procedures' training defaults (Adam, lr 1e-3, 10 epochs, batch 64)."""

_ATTACK_STREAM = 0xAD7  # per-step seeds of the attacks' random starts
_GUARD_STREAM = 0xAD8  # the guard's row subset and its PGD start

GUARD = "adversarial_guard"
"""Buffer name: ``float32 (epochs,)`` PGD robust accuracy of the guard after each epoch."""
STOP = "adversarial_stop"
"""Buffer name: ``int64 ()`` epoch whose collapse stopped training, ``-1`` when none did."""
NOT_MEASURED = -1.0
"""``adversarial_guard`` of an epoch that never ran."""

REQUIRES = frozenset({"differentiable"})
"""The attacks need gradients with respect to the input."""


def _check_attack(eps: float, norm: str, steps: int = 1) -> None:
    """Clear errors for a direct call with a bad threat model."""
    check_norm(norm)
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps!r}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")


def _attack_seeds(seed: int) -> Callable[[int], int]:
    """``step -> seed`` of that training step's random start, from the job's seed."""
    base = stream_seed(seed, _ATTACK_STREAM)
    return lambda step: stream_seed(base, step)


# --- adv-pgd ------------------------------------------------------------------------------


def train_adv_pgd(
    model: nn.Module,
    data: Split,
    *,
    seed: int,
    eps: PositiveFloat = 0.3,
    norm: Norm = "linf",
    steps: PositiveInt = 10,
    step_size: PositiveFloat | None = None,
    random_start: bool = True,
    **training: Any,
) -> nn.Module:
    """Madry et al.'s PGD adversarial training; returns ``model`` in eval mode.

    Each step minimises the cross-entropy of PGD examples (``steps`` steps of ``step_size``,
    default ``2.5 eps / steps``, from a random start in the eps ball unless ``random_start`` is
    false), generated with the model in train mode. Defaults: eps 0.3 (Linf, MNIST's threat
    model), 10 steps, and ``ADVERSARIAL_TRAINING``. Never reads ``data.groups``.
    """
    _check_attack(eps, norm, steps)
    step_seed = _attack_seeds(seed)

    def step(batch: Batch) -> torch.Tensor:
        x_adv = pgd(
            model,
            batch.x,
            batch.y,
            eps,
            norm=norm,
            steps=steps,
            step_size=step_size,
            random_start=random_start,
            seed=step_seed(batch.step),
            keep="last",
        )
        return nn.functional.cross_entropy(model(x_adv), batch.y)

    return train_loop(model, data, step, seed=seed, **(asdict(ADVERSARIAL_TRAINING) | training))


# --- adv-fgsm-rs --------------------------------------------------------------------------


class _Collapsed(Exception):
    """Raised from ``on_epoch_end`` to leave the shared loop when the guard trips."""

    def __init__(self, epoch: int) -> None:
        super().__init__(epoch)
        self.epoch = epoch


def prepare_fgsm_rs(
    model: nn.Module,
    num_classes: int,
    *,
    epochs: int = ADVERSARIAL_TRAINING.epochs,
    **_params: Any,
) -> nn.Module:
    """Register the guard's record on ``model`` (in place): ``adversarial_guard``
    (``(epochs,)``, all ``-1``) and ``adversarial_stop`` (``-1``), on the model's device.
    The layers are untouched; other debiaser parameters are accepted and ignored."""
    device = device_of(model)
    model.register_buffer(GUARD, torch.full((epochs,), NOT_MEASURED, device=device))
    model.register_buffer(STOP, torch.tensor(-1, dtype=torch.int64, device=device))
    return model


def guard_subset(n: int, rows: int, seed: int) -> torch.Tensor:
    """The fixed training rows the guard attacks: ``min(rows, n)`` of ``n``, drawn by ``seed``,
    in increasing order."""
    generator = torch.Generator().manual_seed(stream_seed(seed, _GUARD_STREAM))
    return torch.randperm(n, generator=generator)[: min(rows, n)].sort().values


def guard_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    norm: Norm,
    steps: int,
    seed: int,
    batch_size: int = 256,
) -> float:
    """PGD robust accuracy of ``model`` in eval mode (its mode is restored): the fraction of
    ``x`` classified correctly both clean and under ``steps``-step PGD at ``eps``."""
    robust = 0
    with eval_mode(model):
        for start in range(0, len(x), batch_size):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            x_adv = pgd(model, xb, yb, eps, norm=norm, steps=steps, seed=seed, keep="best")
            fooled = misclassified(model, xb, yb) | misclassified(model, x_adv, yb)
            robust += int((~fooled).sum())
    return robust / len(x)


def train_fgsm_rs(
    model: nn.Module,
    data: Split,
    *,
    seed: int,
    eps: PositiveFloat = 0.3,
    norm: Norm = "linf",
    step_size: PositiveFloat | None = None,
    early_stop: bool = True,
    guard_rows: PositiveInt = 500,
    guard_steps: PositiveInt = 10,
    guard_drop: Annotated[float, Field(ge=0, le=1)] = 0.2,
    **training: Any,
) -> nn.Module:
    """Wong et al.'s FGSM with random start, guarded against catastrophic overfitting.

    Each step minimises the cross-entropy of one FGSM step of ``step_size`` (default
    ``1.25 eps``) from a uniform random start in the eps ball, taken in train mode. After
    every epoch the guard's PGD robust accuracy (``guard_steps`` steps on ``guard_rows`` fixed
    training rows) is recorded in ``adversarial_guard``; with ``early_stop``, an epoch whose
    accuracy is more than ``guard_drop`` below the previous one's stops training and the
    previous epoch's weights come back. Returns ``model`` in eval mode; an unprepared model
    is prepared here. Never reads ``data.groups``.
    """
    _check_attack(eps, norm, guard_steps)
    training = asdict(ADVERSARIAL_TRAINING) | training
    epochs = training["epochs"]
    if not hasattr(model, GUARD):
        model = prepare_fgsm_rs(model, 0, epochs=epochs)
    if getattr(model, GUARD).shape != (epochs,):
        raise ValueError(
            f"model records {getattr(model, GUARD).numel()} guard epochs but epochs={epochs}: "
            "prepare with the same params"
        )
    alpha = 1.25 * eps if step_size is None else step_size
    step_seed = _attack_seeds(seed)
    rows = guard_subset(len(data), guard_rows, seed)
    guard_x, guard_y = data.x[rows.to(data.x.device)], data.y[rows.to(data.y.device)]
    guard_seed = stream_seed(seed, _GUARD_STREAM)
    record = [NOT_MEASURED] * epochs
    state = {"previous": 0.0, "kept": None}

    def step(batch: Batch) -> torch.Tensor:
        start = random_start(batch.x, norm, eps, seed=step_seed(batch.step))
        x_adv = fgsm(model, batch.x, batch.y, eps, norm=norm, init=start, step_size=alpha)
        return nn.functional.cross_entropy(model(x_adv), batch.y)

    def on_epoch_end(epoch: int) -> None:
        accuracy = guard_accuracy(
            model, guard_x, guard_y, eps, norm=norm, steps=guard_steps, seed=guard_seed
        )
        record[epoch] = accuracy
        if early_stop and accuracy - state["previous"] < -guard_drop:
            raise _Collapsed(epoch)
        state["previous"] = accuracy
        if early_stop:
            state["kept"] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    stopped = -1
    try:
        train_loop(model, data, step, seed=seed, on_epoch_end=on_epoch_end, **training)
    except _Collapsed as collapse:
        stopped = collapse.epoch
        model.load_state_dict(state["kept"])
    with torch.no_grad():
        getattr(model, GUARD).copy_(torch.tensor(record, dtype=torch.float32))
        getattr(model, STOP).fill_(stopped)
    return model.eval()


# --- TRADES -------------------------------------------------------------------------------


def kl_per_sample(log_p_adv: torch.Tensor, p_clean: torch.Tensor) -> torch.Tensor:
    """``(N,)`` ``KL(p_clean || p_adv)`` of each row, from the adversarial log-probabilities
    (``nn.KLDivLoss``'s pointwise ``p (log p - log q)``, summed over classes; ``0 log 0 = 0``)."""
    return nn.functional.kl_div(log_p_adv, p_clean, reduction="none").sum(dim=1)


def trades_loss(
    logits_clean: torch.Tensor, logits_adv: torch.Tensor, y: torch.Tensor, beta: float
) -> torch.Tensor:
    """TRADES' objective as the reference computes it: ``CE(f(x), y) + beta *
    sum_i KL(softmax f(x_i) || softmax f(x'_i)) / N``. Gradients flow through both
    distributions, as in the reference (the clean one is not detached)."""
    natural = nn.functional.cross_entropy(logits_clean, y)
    robust = nn.functional.kl_div(
        nn.functional.log_softmax(logits_adv, dim=1),
        nn.functional.softmax(logits_clean, dim=1),
        reduction="sum",
    ) / len(y)
    return natural + beta * robust


def trades_example(
    model: nn.Module,
    x: torch.Tensor,
    eps: float,
    *,
    norm: Norm = "linf",
    steps: int = 10,
    step_size: float | None = None,
    init: torch.Tensor | None = None,
) -> torch.Tensor:
    """TRADES' ``x'``: PGD maximising ``sum_i KL(p(x_i) || p(x'_i))`` from ``x + init`` (cut
    to the box), the last iterate, with ``model`` in eval mode (its mode is restored after)."""
    with eval_mode(model):
        with torch.no_grad():
            p_clean = nn.functional.softmax(model(x), dim=1)

        def divergence(logits: torch.Tensor, _y: torch.Tensor) -> torch.Tensor:
            return kl_per_sample(nn.functional.log_softmax(logits, dim=1), p_clean)

        labels = torch.zeros(len(x), dtype=torch.int64, device=x.device)  # unused by the KL
        return pgd(
            model,
            x,
            labels,
            eps,
            norm=norm,
            steps=steps,
            step_size=step_size,
            objective=divergence,
            init=init,
            random_start=False,
            keep="last",
        )


def train_trades(
    model: nn.Module,
    data: Split,
    *,
    seed: int,
    beta: NonNegativeFloat = 6.0,
    eps: PositiveFloat = 0.3,
    norm: Norm = "linf",
    steps: PositiveInt = 10,
    step_size: PositiveFloat | None = None,
    **training: Any,
) -> nn.Module:
    """TRADES; returns ``model`` in eval mode.

    ``x'`` maximises ``KL(p(x) || p(x'))`` by ``steps`` PGD steps of ``step_size`` (default
    ``2.5 eps / steps``) from ``x + 0.001 N(0, 1)``, with the model in eval mode; the update
    minimises ``trades_loss`` in train mode. ``beta`` is the paper's ``1 / lambda`` (default 6,
    ``train_trades_cifar10.py``'s; ``train_trades_mnist.py`` uses 1). Never reads
    ``data.groups``.

    Deviations from ``trades_loss`` of the reference: the clean distribution the attack
    compares with is computed once per batch (the reference recomputes the same eval-mode
    value every step); the start ``x + 0.001 N(0, 1)`` is cut to the image box before the
    first step (the reference cuts it after); the update reuses the clean forward pass of the
    cross-entropy for the KL's ``f(x)`` (the reference runs ``x`` a second time, which with
    dropout draws a second mask; the paper's loss has one ``f(x)``).
    """
    _check_attack(eps, norm, steps)
    generator = torch.Generator().manual_seed(stream_seed(seed, _ATTACK_STREAM))

    def step(batch: Batch) -> torch.Tensor:
        x, y = batch.x, batch.y
        init = 0.001 * torch.randn(x.shape, generator=generator)
        x_adv = trades_example(
            model,
            x,
            eps,
            norm=norm,
            steps=steps,
            step_size=step_size,
            init=init.to(device=x.device, dtype=x.dtype),
        )
        return trades_loss(model(x), model(x_adv), y, beta)

    return train_loop(model, data, step, seed=seed, **(asdict(ADVERSARIAL_TRAINING) | training))


# --- specs --------------------------------------------------------------------------------

PGD_DESCRIPTION = (
    "PGD adversarial training (Madry et al., ICLR 2018): CE on PGD examples; no group labels"
)
FGSM_RS_DESCRIPTION = (
    "FGSM with random start (Wong et al., ICLR 2020), PGD-guarded early stop against "
    "catastrophic overfitting; no group labels"
)
TRADES_DESCRIPTION = (
    "TRADES (Zhang et al., ICML 2019): CE + beta * KL(clean || adversarial); no group labels"
)


def specs() -> list[DebiaserSpec]:
    """``adv-pgd``, ``adv-fgsm-rs`` and ``trades``, for ``plugins.debiasers`` to register."""
    common = {"requires": REQUIRES, "training": ADVERSARIAL_TRAINING}
    return [
        debiaser_spec("adv-pgd", train_adv_pgd, PGD_DESCRIPTION, **common),
        debiaser_spec(
            "adv-fgsm-rs",
            train_fgsm_rs,
            FGSM_RS_DESCRIPTION,
            prepare=prepare_fgsm_rs,
            **common,
        ),
        debiaser_spec("trades", train_trades, TRADES_DESCRIPTION, **common),
    ]
