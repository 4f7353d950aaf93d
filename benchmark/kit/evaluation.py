"""Scoring a model without side effects: eval mode, no gradients, batched logits, the targets.

An evaluator is handed the job's model as the runner (or a debiaser) left it and must give it
back unchanged, so every built-in evaluator asks for logits, predictions and attributions
through these helpers and a third-party one gets the same behaviour by using them too:

* the model runs in eval mode (dropout off, batch-norm statistics frozen), and the caller's
  training flag is restored afterwards, whatever happens;
* inference keeps no autograd graph (``torch.no_grad``) and goes in batches of ``batch_size``
  rows, so memory stays bounded on a large split;
* the class an attribution is computed for is resolved one way everywhere: ``prediction``
  (the model's class on the clean image, as RISE, Adebayo et al. and most faithfulness
  metrics do) or ``label`` (the ground truth, as ROAR and Quantus's defaults do).

The batch size is part of the numbers: a float32 matrix product may round differently for a
different batch, so an evaluator keeps its own ``batch_size`` (the built-ins' defaults are 512
for a whole split and 1,024 for perturbation copies) rather than each helper choosing one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn

from benchmark.modalities import model_inputs
from benchmark.specs import EvaluationContext, Split

Target = Literal["prediction", "label"]
"""Which class an image is explained and scored for."""
TARGETS: tuple[Target, ...] = ("prediction", "label")


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode for the block; its training flag is restored on exit.

    Gradients are left as they are: code that explains inside the block (Quantus's metrics
    call the job's explainer) still needs them. :func:`evaluating` adds ``no_grad``.
    """
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode under ``torch.no_grad()``; the training flag is restored."""
    with eval_mode(model), torch.no_grad():
        yield model


def predict_logits(
    model: nn.Module, x: torch.Tensor, batch_size: int = 512, *inputs: torch.Tensor
) -> torch.Tensor:
    """Logits of every row of ``x``, ``batch_size`` rows per forward pass, in eval mode and
    without gradients, on the device of ``x``. ``inputs`` are the model's further inputs, cut
    into the same batches (a caption model's token indices: :func:`split_logits`)."""
    with evaluating(model):
        return torch.cat(
            [
                model(x[i : i + batch_size], *(t[i : i + batch_size] for t in inputs))
                for i in range(0, len(x), batch_size)
            ]
        )


def split_logits(context: EvaluationContext, split: Split, batch_size: int = 512) -> torch.Tensor:
    """Logits of the job's model on a whole split, fed every input it takes (the images, and
    the captions of a model that takes text: ``benchmark.modalities``). An evaluator that
    declares ``modalities={"image", "text"}`` scores through this, so the same code serves
    image-only and captioned models."""
    extra = model_inputs(context.model_spec, split)
    return predict_logits(context.model, split.x, batch_size, *extra)


def check_target(target: str) -> None:
    """Raise ``ValueError`` unless ``target`` is ``prediction`` or ``label``: called before any
    work, so a misspelt suite value fails at once rather than after the first model call."""
    if target not in TARGETS:
        raise ValueError(f"target must be 'prediction' or 'label', got {target!r}")


def resolve_target(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    target: str,
    batch_size: int = 512,
) -> torch.Tensor:
    """``(N,)`` int64 classes to explain and score: the model's prediction on ``x`` (batched
    by ``batch_size``) or a copy of ``labels``."""
    check_target(target)
    if target == "prediction":
        return predict_logits(model, x, batch_size).argmax(1)
    return labels.long().clone()


def require_explainer(context: EvaluationContext, evaluator: str) -> Callable[..., torch.Tensor]:
    """``context.explain``, or a ``ValueError`` naming ``evaluator``: the runner passes an
    explainer only to evaluators whose spec requires ``explainer``, so a direct call without
    one gets told why."""
    if context.explain is None:
        raise ValueError(f"{evaluator} needs an explainer (its spec requires 'explainer')")
    return context.explain


def evaluation_seed(context: EvaluationContext, seed: int | None) -> int:
    """The seed of an evaluator's own random draws: its ``seed`` parameter, or the job's seed
    when that is ``None`` (so the draws change with the job's seed unless fixed)."""
    return context.seed if seed is None else int(seed)


def check_attributions(attributions: torch.Tensor, x: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``attributions`` is ``(N, 1 or C, H, W)`` for ``x``."""
    n, c, h, w = x.shape
    shape = tuple(attributions.shape)
    if len(shape) != 4 or shape[0] != n or shape[1] not in (1, c) or shape[2:] != (h, w):
        raise ValueError(f"attributions of shape {shape} do not fit images of shape {(n, c, h, w)}")


def explained_images(
    context: EvaluationContext,
    n_images: int,
    target: str,
    batch_size: int,
    evaluator: str = "this evaluator",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first ``n_images`` test images, their targets and the job's attributions for them
    (on the images' device).

    The first ``n`` (not a random draw) so every explainer and evaluator of a suite scores the
    same images and the runner's attribution cache is shared between evaluators.
    """
    explain = require_explainer(context, evaluator)
    if n_images < 1:
        raise ValueError(f"n_images must be at least 1, got {n_images}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    test = context.dataset.test
    x = test.x[:n_images]
    classes = resolve_target(context.model, x, test.y[:n_images], target, batch_size)
    attributions = explain(context.model, x, classes)
    check_attributions(attributions, x)
    return x, classes, attributions.to(x.device)
