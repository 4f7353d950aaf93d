"""Just Train Twice (``jtt``): up-weight what an early-stopped ERM model gets wrong.

Liu, Haghgoo, Chen, Raghunathan, Koh, Sagawa, Liang & Finn, ICML 2021 (arXiv 2107.09044);
reference code github.com/anniesch/jtt (``process_training.py``, ``generate_downstream.py``).
Unsupervised: it never reads ``data.groups``.

1. *Identification*: train ERM for ``first_epochs`` epochs (the paper's ``T``), then collect
   the error set ``E``: the training samples that model misclassifies (eval mode, no
   gradient). Early stopping is the point: a briefly trained model has learnt the easy,
   spurious rule and not yet memorised the exceptions, so ``E`` is rich in bias-conflicting
   samples.
2. *Up-sampling*: reset the model to the weights it had before stage 1 (the paper trains a
   fresh model of the same architecture) and train it for ``epochs`` epochs on the upsampled
   training set in which every error-set row appears ``lambda_up`` times and every other row
   once, each epoch one shuffled pass over it. That is the reference code's construction
   (``train.py``: the error-set indices repeated ``up_weight - 1`` more times and concatenated
   with the whole set; ``shuffle=True``), so an epoch is ``N + (lambda_up - 1) |E|`` rows long
   and the number of optimiser steps grows with the error set, as in the reference.

Defaults ``first_epochs = 2``, ``lambda_up = 50``. The up-weight is the paper's CelebA value
(its image benchmark with an early-stopped identification model, T = 1 epoch of about 640
steps; Waterbirds uses T = 60, lambda 100 with a pretrained ResNet at lr 1e-5, far slower to
fit). Our epochs are much shorter (4,000 MNIST-sized images are 63 steps of 64), so T counts
two of them: a briefly trained model has learnt the colour shortcut and misclassifies mostly
the bias-conflicting images. JTT's known cost shows on data without bias: the error set is then
just the hard samples, and repeating them 50 times trains on little else.

An earlier version weighted the loss (``mean(w_i CE_i) / mean(w)``) over the plain epochs
instead: the same objective in expectation, but a different optimisation (each error-set
image seen once per epoch with a 50x gradient, instead of 50 times with a normal one, and a
fixed number of steps). It was replaced to match the reference, the one the paper's numbers
come from. Both stages use the shared optimiser defaults (Adam, lr 1e-3, batch 64).
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import PositiveInt
from torch import nn

from benchmark.kit.training import TRAINING, Batch, train_loop
from benchmark.specs import DebiaserSpec, Split
from plugins.debiasers.declaring import debiaser_spec


@torch.no_grad()
def error_set(model: nn.Module, data: Split, batch_size: int = 512) -> torch.Tensor:
    """``bool (N,)``: the rows of ``data`` that ``model`` (in eval mode) misclassifies."""
    was_training = model.training
    model.eval()
    wrong = torch.cat(
        [
            model(data.x[start : start + batch_size]).argmax(dim=1).cpu()
            != data.y[start : start + batch_size].cpu()
            for start in range(0, len(data), batch_size)
        ]
    )
    model.train(was_training)
    return wrong


def upsampled_rows(errors: torch.Tensor, lambda_up: int) -> torch.Tensor:
    """``int64``: every row once, then the error-set rows ``lambda_up - 1`` more times (the
    reference's stage-2 index list; ``train_loop`` shuffles it each epoch)."""
    if isinstance(lambda_up, bool) or not isinstance(lambda_up, int) or lambda_up < 1:
        raise ValueError(f"lambda_up must be a positive integer, got {lambda_up!r}")
    everything = torch.arange(len(errors), dtype=torch.int64)
    wrong = torch.nonzero(errors.cpu()).flatten().repeat(lambda_up - 1)
    return torch.cat([everything, wrong])


def train_jtt(
    model: nn.Module,
    data: Split,
    *,
    seed: int,
    first_epochs: PositiveInt = 2,
    lambda_up: PositiveInt = 50,
    **training: Any,
) -> nn.Module:
    """Identification ERM for ``first_epochs``, then ``epochs`` on the upsampled set from the
    same initial weights; returns ``model`` in eval mode. Never reads ``data.groups``."""
    if not isinstance(first_epochs, int) or first_epochs < 1:
        raise ValueError(f"first_epochs must be a positive integer, got {first_epochs!r}")
    if isinstance(lambda_up, bool) or not isinstance(lambda_up, int) or lambda_up < 1:
        raise ValueError(f"lambda_up must be a positive integer, got {lambda_up!r}")
    initial = {name: value.detach().clone() for name, value in model.state_dict().items()}

    def step(batch: Batch) -> torch.Tensor:
        return nn.functional.cross_entropy(model(batch.x), batch.y)

    # both stages share every training parameter but the number of epochs
    train_loop(model, data, step, seed=seed, **{**training, "epochs": first_epochs})
    batch_size = training.get("batch_size", TRAINING.batch_size)
    rows = upsampled_rows(error_set(model, data, batch_size=max(batch_size, 512)), lambda_up)
    model.load_state_dict(initial)
    return train_loop(model, data, step, seed=seed, epoch_rows=rows, **training)


DESCRIPTION = (
    "Just Train Twice (ICML 2021): retrain with the errors of an "
    "early-stopped ERM model upsampled lambda_up times; no group labels"
)


def specs() -> list[DebiaserSpec]:
    """The ``jtt`` debiaser, for ``plugins.debiasers`` to register."""
    return [debiaser_spec("jtt", train_jtt, DESCRIPTION, version="2")]  # 2: upsampling
