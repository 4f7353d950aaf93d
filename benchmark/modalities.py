"""A second input modality next to the image: which combinations can run, and how a model is fed.

Every contract of the product was written for one image tensor per sample, and every existing
component keeps it unchanged: ``ComponentSpec.modalities`` defaults to ``{"image"}``. A dataset
that also provides ``text`` stores it per sample in ``Split.extras["text"]`` (``TEXT_KEY``):
``int64 (N, L)`` indices into ``Dataset.vocabulary``, padded with ``PAD`` (``0``) after the
last token, a row of padding for a sample without a caption. A model whose ``modalities``
include ``text`` is built with ``vocabulary_size=len(dataset.vocabulary)`` and called
``model(x, text)``; it still returns ``(N, num_classes)`` logits.

Which combinations run (MTEB's modalities, set arithmetic like the capability tags): the
combination's *inputs* are its model's modalities. The dataset must provide all of them, and
every other component (debiaser, explainer, evaluator) must handle all of them, since each one
calls the model. An image-only model on a captioned dataset is fine (it never sees the
caption: the image-only control of a multimodal suite); an image-only saliency method on a
captioned model is skipped with the reason, because what it would attribute to is not defined
(the caption is an input too). Explaining the image branch with the caption held fixed is well
defined, and the multimodal evaluator does it itself (Grad-CAM of the image branch, integrated
gradients over image and token embeddings), saying so in its glossary.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

IMAGE = "image"
TEXT = "text"
TEXT_KEY = "text"
"""``Split.extras`` key of the token indices."""
PAD = 0
"""The padding token's index: ``Dataset.vocabulary[0]``."""


def inputs_of(components: Iterable[Any]) -> frozenset[str]:
    """The modalities the combination's model takes (image only without a model)."""
    models = [c for c in components if c.kind == "model"]
    if not models:
        return frozenset({IMAGE})
    return frozenset().union(*(c.spec.modalities for c in models))


def unmet_modalities(components: list[Any]) -> list[str]:
    """Why a combination cannot feed its model, one sentence per component (empty if it can).

    ``components`` are ``benchmark.suite.Component`` (a ``kind``, a ``label``, a ``spec``).
    """
    components = list(components)
    needed = inputs_of(components)
    if needed == {IMAGE}:
        return []
    model = next(c for c in components if c.kind == "model")
    takes = " + ".join(sorted(needed))
    reasons = []
    for comp in components:
        if comp.kind == "model":
            continue
        missing = sorted(needed - comp.spec.modalities)
        if not missing:
            continue
        if comp.kind == "dataset":
            reasons.append(
                f"model '{model.label}' takes {takes}, but dataset '{comp.label}' provides "
                f"no {', '.join(missing)}"
            )
        else:
            handles = " + ".join(sorted(comp.spec.modalities))
            reasons.append(
                f"{comp.kind} '{comp.label}' handles {handles} inputs only; model "
                f"'{model.label}' takes {takes}"
            )
    return reasons


def takes_text(model_spec: Any) -> bool:
    """Whether a model (its spec) is called ``model(x, text)``."""
    return TEXT in getattr(model_spec, "modalities", ())


def text_of(split: Any, where: str = "") -> torch.Tensor:
    """The split's token indices, or a clear error naming ``where`` (a dataset)."""
    text = split.extras.get(TEXT_KEY)
    if not isinstance(text, torch.Tensor) or text.ndim != 2 or text.dtype != torch.int64:
        found = "nothing" if text is None else f"{type(text).__name__} {getattr(text, 'shape', '')}"
        raise ValueError(
            f"{where or 'the dataset'}: extras['{TEXT_KEY}'] must be int64 token indices of "
            f"shape (N, L), got {found}"
        )
    if text.shape[0] != len(split):
        raise ValueError(
            f"{where or 'the dataset'}: extras['{TEXT_KEY}'] has {text.shape[0]} rows for "
            f"{len(split)} samples"
        )
    return text


def model_inputs(model_spec: Any, split: Any) -> tuple[torch.Tensor, ...]:
    """What the model takes besides the images, in order: ``(text,)`` or ``()``."""
    return (text_of(split),) if takes_text(model_spec) else ()


def lengths(text: torch.Tensor) -> torch.Tensor:
    """Tokens before the padding of each row (``0`` for a missing caption)."""
    return (text != PAD).sum(dim=1)
