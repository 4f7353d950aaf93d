"""Which modality a multimodal model leans on: per-head accuracy, modality ablation, attribution.

The seed report (``shared/seeds/000``, Que-1, "Accuracy of multiple heads in LSTMCNN") scores
the fusion head, the CNN head, the LSTM head and their logit-average ensemble separately, and
its numbers show the text branch doing the work (LSTM 0.902, fusion 0.891, CNN 0.689). Wang,
Tran & Feiszli 2020 (Gradient-Blending, CVPR) and Wu, Jastrzebski, Cho & Geras 2022 ("greedy
learner", ICML) name the failure: a multimodal network learns the easier modality first and
under-uses the other. This evaluator measures it on a model with per-modality heads
(``modality-heads``: ``plugins.models.lstm_cnn``), three ways:

* **Per-head accuracy** on the test split: ``fusion_accuracy`` (``Z_Fus``, the model's
  prediction), ``image_head_accuracy`` (``Z_CNN``), ``text_head_accuracy`` (``Z_LSTM``) and
  ``ensemble_accuracy`` (the mean of the heads' logits, the report's ensemble). A head trained
  with weight 0 (the single-head network: ``head_weights``) is an untrained readout, so its
  accuracy and the ensemble are not reported. ``class_degree_of_bias`` is the report's DoB
  (population std of the per-class recall of the fusion head). Where the dataset says which
  digit each caption names (``extras["named_digit"]``, caption-mnist), the fusion accuracy is
  split into test images whose caption names their digit (``fusion_accuracy_named``) and the
  others (``_unnamed``), and so is each trained head's (``text_head_accuracy_named``, ...: the
  seed report's question, whether the text head matches the fused one where the caption
  says the answer); ``named_share`` is the first group's share and ``text_ceiling`` the
  accuracy of the best text-only rule when an unnamed caption carries no label information
  (true on caption-mnist's test split, where the tag is independent of the class):
  ``named_share + (1 - named_share) / K``.
* **Modality ablation** (Wu et al.'s conditional utilisation rate, ``u(m1 | m0) = (A(m0, m1) -
  A(m0)) / A(m0, m1)``): the fusion accuracy with one modality replaced, and
  ``image_utilisation = (A - A_image ablated) / A`` (``text_utilisation`` alike): the share of
  the model's accuracy that the modality carries given the other. Wu et al. estimate ``A(m0)``
  with a network trained without ``m1``; we ablate the trained model's input at test time (the
  question is what *this* model uses), two ways: *shuffle* (each test image, or caption, is
  swapped for another test sample's: a seeded permutation with no fixed point, so the
  modality keeps its distribution and loses its link to the label; the main metric) and
  *blank* (a zero image; an all-padding caption, the dataset's "missing caption").
  Utilisation is 0 for a modality the model ignores, and can be negative where the ablation
  helps; it is a description, not a score (direction ``neither``).
* **Attribution share**: integrated gradients (Sundararajan et al. 2017, captum's
  ``IntegratedGradients``) of the fusion logit of the predicted class over the image and the
  token embeddings together (token indices have no gradient; ``fused_from_embeddings``), from
  a black image and all-zero embeddings (the padding token's): ``image_attribution_share`` is
  the mean over ``attribution_images`` test images of ``sum|IG_image| / (sum|IG_image| +
  sum|IG_text|)``. ``untrained_image_attribution_share`` is the same for a freshly initialised
  network of the same architecture (seeded): what the architecture gives before any learning,
  the control that tells a reader which share means "leans on the image".
  ``ig_completeness_gap`` is captum's convergence delta relative to ``|f(x) - f(baseline)|``,
  mean over images: how far the integral's Riemann sum is from exact (``ig_steps``).

Pictures: Grad-CAM (Selvaraju et al. 2017, captum's ``LayerGradCam``) of the image branch with
each image's own caption held fixed, at the backbone's last convolution, upsampled to the
image, for the first ``cam_images`` test images; stored with the images and captions for the
figure (``plugins.evaluators.multimodal_figures``). Explaining the image branch is well defined
here because the caption is held fixed; an image-only explainer would not know what to do
with it, which is why the planner keeps those off captioned models (``benchmark.modalities``).
``tests/test_multimodal.py`` checks ablation and utilisation against hand-computed toy values.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from pydantic import NonNegativeInt, PositiveInt
from torch import nn

from benchmark.kit.devices import initialise_on_cpu
from benchmark.kit.evaluation import eval_mode, evaluating, predict_logits
from benchmark.modalities import IMAGE, PAD, TEXT, text_of
from benchmark.specs import Direction, Evaluation, EvaluationContext, EvaluatorSpec
from plugins.evaluators.declaring import evaluator_spec
from plugins.models.lstm_cnn import HEADS, MODALITY_HEADS

ABLATIONS = ("shuffle", "blank")
SUMMARY = (
    "fusion_accuracy",
    "image_head_accuracy",
    "text_head_accuracy",
    "ensemble_accuracy",
    "image_utilisation",
    "text_utilisation",
    "image_attribution_share",
    "untrained_image_attribution_share",
)
"""Metrics also stored in the arrays, for the figures (which read stored arrays only)."""
MODALITIES = (IMAGE, TEXT)


def derangement(n: int, generator: torch.Generator) -> torch.Tensor:
    """A seeded permutation of ``range(n)`` with no fixed point (``n >= 2``): sample ``order[k]``
    takes the input of ``order[k + 1]``, a random cycle through all samples."""
    if n < 2:
        raise ValueError(f"shuffling needs at least 2 test samples, got {n}")
    order = torch.randperm(n, generator=generator)
    partner = torch.empty(n, dtype=torch.int64)
    partner[order] = order.roll(-1)
    return partner


def ablate(
    x: torch.Tensor, text: torch.Tensor, modality: str, how: str, partner: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The inputs with ``modality`` shuffled (rows taken from ``partner``) or blanked."""
    if how not in ABLATIONS or modality not in MODALITIES:
        raise ValueError(
            f"ablation must be one of {ABLATIONS} of {MODALITIES}, got {how} {modality}"
        )
    partner = partner.to(x.device)
    if modality == IMAGE:
        return (x[partner] if how == "shuffle" else torch.zeros_like(x)), text
    return x, (text[partner] if how == "shuffle" else torch.full_like(text, PAD))


def utilisation(accuracy: float, ablated_accuracy: float) -> float:
    """Wu et al.'s conditional utilisation rate ``(A - A_ablated) / A``."""
    if not accuracy > 0:
        raise ValueError("utilisation is undefined for a model with accuracy 0")
    return (accuracy - ablated_accuracy) / accuracy


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(1) == y).double().mean())


def _heads(model: nn.Module, x: torch.Tensor, text: torch.Tensor, batch: int) -> dict:
    with evaluating(model):
        parts = [
            model.branch_logits(x[i : i + batch], text[i : i + batch])
            for i in range(0, len(x), batch)
        ]
    return {h: torch.cat([p[h] for p in parts]) for h in HEADS}


def head_metrics(model: nn.Module, heads: dict, y: torch.Tensor, num_classes: int) -> dict:
    """Per-head accuracies (trained heads only), the ensemble and the class-wise DoB."""
    trained = [h for h, w in zip(HEADS, model.head_weights.tolist(), strict=True) if w > 0]
    metrics = {"fusion_accuracy": _accuracy(heads["fusion"], y)}
    for head in trained[1:]:
        metrics[f"{head}_head_accuracy"] = _accuracy(heads[head], y)
    if len(trained) > 1:
        ensemble = torch.stack([heads[h] for h in trained]).mean(0)
        metrics["ensemble_accuracy"] = _accuracy(ensemble, y)
    predicted = heads["fusion"].argmax(1)
    recalls = [
        float((predicted[y == c] == c).double().mean())
        for c in range(num_classes)
        if (y == c).any()
    ]
    metrics["class_degree_of_bias"] = float(np.std(recalls))
    return metrics


def attribution_shares(
    model: nn.Module, x: torch.Tensor, text: torch.Tensor, steps: int, batch: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per image: the image's share of the absolute IG mass, and the relative completeness gap."""
    from captum.attr import IntegratedGradients

    with evaluating(model):
        target = predict_logits(model, x, batch, text).argmax(1)
    with torch.no_grad():
        embedded = model.embed(text)
    ig = IntegratedGradients(model.fused_from_embeddings)
    with torch.enable_grad(), eval_mode(model):
        (image_ig, text_ig), delta = ig.attribute(
            (x.detach().clone(), embedded.detach().clone()),
            baselines=(torch.zeros_like(x), torch.zeros_like(embedded)),
            target=target,
            additional_forward_args=(text,),
            n_steps=steps,
            internal_batch_size=batch,
            return_convergence_delta=True,
        )
        with torch.no_grad():
            rows = torch.arange(len(x), device=x.device)
            gain = (
                model(x, text)[rows, target]
                - model.fused_from_embeddings(
                    torch.zeros_like(x), torch.zeros_like(embedded), text
                )[rows, target]
            )
    image_mass = image_ig.abs().flatten(1).sum(1)
    text_mass = text_ig.abs().flatten(1).sum(1)
    share = image_mass / (image_mass + text_mass).clamp_min(1e-12)
    gap = delta.abs() / gain.abs().clamp_min(1e-12)
    return share.detach().cpu().numpy(), gap.detach().cpu().numpy()


def untrained_copy(model: nn.Module, seed: int) -> nn.Module:
    """The same architecture with every layer re-initialised from ``seed`` (the control), on
    the CPU whatever the device (the same weights everywhere), the caller's random state
    untouched."""

    def reset(fresh: nn.Module) -> None:
        for module in fresh.modules():
            if hasattr(module, "reset_parameters") and module is not fresh:
                module.reset_parameters()

    return initialise_on_cpu(copy.deepcopy(model), seed, reset).eval()


def grad_cams(model: nn.Module, x: torch.Tensor, text: torch.Tensor) -> np.ndarray:
    """Grad-CAM of the image branch, caption held fixed, upsampled to ``(N, H, W)``."""
    from captum.attr import LayerAttribution, LayerGradCam

    if not model.image_target_layer:
        return np.zeros((0, *x.shape[2:]))
    layer = model.get_submodule(model.image_target_layer)
    with evaluating(model):
        target = model(x, text).argmax(1)
    cam = LayerGradCam(lambda images: model(images, text), layer)
    with torch.enable_grad(), eval_mode(model):
        maps = cam.attribute(x.detach().clone(), target=target, relu_attributions=True)
    maps = LayerAttribution.interpolate(maps.detach(), tuple(x.shape[2:]), "bilinear")
    return maps[:, 0].cpu().numpy()


def evaluate_multimodal(
    context: EvaluationContext,
    batch_size: PositiveInt = 512,
    attribution_images: PositiveInt = 100,
    ig_steps: PositiveInt = 32,
    cam_images: NonNegativeInt = 8,
    seed: NonNegativeInt | None = None,
) -> Evaluation:
    """Per-head accuracy, modality ablation and attribution shares of a multimodal model."""
    model, test = context.model, context.dataset.test
    if not hasattr(model, "branch_logits"):
        raise ValueError(f"multimodal: the model has no per-modality heads ({MODALITY_HEADS})")
    text = text_of(test, "multimodal: the test split")
    y, k = test.y, context.dataset.num_classes
    heads = _heads(model, test.x, text, batch_size)
    metrics = head_metrics(model, heads, y, k)
    fusion_correct = heads["fusion"].argmax(1) == y
    named = test.extras.get("named_digit")
    if named is not None:
        names_label = torch.as_tensor(named, device=y.device) == y
        share = float(names_label.double().mean())
        metrics |= {"named_share": share, "text_ceiling": share + (1 - share) / k}
        trained = [h for h in HEADS[1:] if f"{h}_head_accuracy" in metrics]
        for key, rows in (("named", names_label), ("unnamed", ~names_label)):
            if rows.any():
                metrics[f"fusion_accuracy_{key}"] = float(fusion_correct[rows].double().mean())
                for head in trained:
                    correct = heads[head][rows].argmax(1) == y[rows]
                    metrics[f"{head}_head_accuracy_{key}"] = float(correct.double().mean())
    accuracy = metrics["fusion_accuracy"]
    generator = torch.Generator().manual_seed(context.seed if seed is None else int(seed))
    partner = derangement(len(y), generator)
    for how in ABLATIONS:
        for modality in MODALITIES:
            images, captions = ablate(test.x, text, modality, how, partner)
            a = _accuracy(predict_logits(model, images, batch_size, captions), y)
            suffix = "" if how == "shuffle" else "_blank"
            metrics[f"{how}_{modality}_accuracy"] = a
            metrics[f"{modality}_utilisation{suffix}"] = utilisation(accuracy, a)
    n = min(attribution_images, len(y))
    share, gap = attribution_shares(model, test.x[:n], text[:n], ig_steps, batch_size)
    control, _ = attribution_shares(
        untrained_copy(model, context.seed), test.x[:n], text[:n], ig_steps, batch_size
    )
    metrics |= {
        "image_attribution_share": float(share.mean()),
        "untrained_image_attribution_share": float(control.mean()),
        "ig_completeness_gap": float(gap.mean()),
    }
    m = min(cam_images, len(y))
    arrays = {
        "summary": {name: metrics.get(name) for name in SUMMARY},
        "cam_images": np.round(test.x[:m].cpu().numpy(), 3).tolist(),
        "cam_maps": np.round(grad_cams(model, test.x[:m], text[:m]), 4).tolist(),
        "cam_captions": [
            " ".join(context.dataset.vocabulary[t] for t in row if t != PAD)
            for row in text[:m].cpu().tolist()
        ],
        "cam_labels": y[:m].cpu().tolist(),
    }
    return Evaluation(metrics=metrics, arrays=arrays, per_image={"image_attribution_share": share})


DIRECTIONS: dict[str, Direction] = {
    "fusion_accuracy": "higher",
    "image_head_accuracy": "higher",
    "text_head_accuracy": "higher",
    "ensemble_accuracy": "higher",
    "class_degree_of_bias": "lower",
    "fusion_accuracy_named": "higher",
    "fusion_accuracy_unnamed": "higher",
    "image_head_accuracy_named": "higher",
    "image_head_accuracy_unnamed": "higher",
    "text_head_accuracy_named": "higher",
    "text_head_accuracy_unnamed": "higher",
    "named_share": "neither",
    "text_ceiling": "neither",
    "image_utilisation": "neither",
    "text_utilisation": "neither",
    "image_utilisation_blank": "neither",
    "text_utilisation_blank": "neither",
    "shuffle_image_accuracy": "neither",
    "shuffle_text_accuracy": "neither",
    "blank_image_accuracy": "neither",
    "blank_text_accuracy": "neither",
    "image_attribution_share": "neither",
    "untrained_image_attribution_share": "neither",
    "ig_completeness_gap": "lower",
}

GLOSSARY = {
    "fusion_accuracy": "Test accuracy of the fusion head, the model's prediction.",
    "image_head_accuracy": "Test accuracy of the image branch's own head (trained heads only).",
    "text_head_accuracy": "Test accuracy of the text branch's own head (trained heads only).",
    "ensemble_accuracy": "Test accuracy of the mean of the trained heads' logits.",
    "class_degree_of_bias": "Population std of the fusion head's per-class recall (the seed "
    "report's DoB).",
    "fusion_accuracy_named": "Fusion accuracy on test images whose caption names their digit.",
    "fusion_accuracy_unnamed": "Fusion accuracy on test images whose caption does not name "
    "their digit (none, a wrong one, or missing).",
    "image_head_accuracy_named": "Image head accuracy where the caption names the digit.",
    "image_head_accuracy_unnamed": "Image head accuracy where the caption does not.",
    "text_head_accuracy_named": "Text head accuracy where the caption names the digit.",
    "text_head_accuracy_unnamed": "Text head accuracy where the caption does not.",
    "named_share": "Share of test captions that name the image's digit.",
    "text_ceiling": "Accuracy of the best caption-only rule when unnamed captions carry no "
    "label information: named_share + (1 - named_share) / K.",
    "image_utilisation": "(A - A with images shuffled across the test set) / A: the share of "
    "the accuracy the image carries given the caption (Wu et al. 2022).",
    "text_utilisation": "(A - A with captions shuffled across the test set) / A.",
    "image_utilisation_blank": "(A - A with black images) / A.",
    "text_utilisation_blank": "(A - A with every caption missing) / A.",
    "shuffle_image_accuracy": "Fusion accuracy with each image swapped for another's.",
    "shuffle_text_accuracy": "Fusion accuracy with each caption swapped for another's.",
    "blank_image_accuracy": "Fusion accuracy with black images.",
    "blank_text_accuracy": "Fusion accuracy with every caption missing.",
    "image_attribution_share": "Image's share of the absolute integrated-gradients mass over "
    "image and token embeddings, mean over test images.",
    "untrained_image_attribution_share": "The same share for a freshly initialised network "
    "of the same architecture: the control.",
    "ig_completeness_gap": "|IG sum - (f(x) - f(baseline))| / |f(x) - f(baseline)|, mean.",
}


def specs() -> list[EvaluatorSpec]:
    """The ``multimodal`` evaluator, for models with per-modality heads."""
    from plugins.evaluators.multimodal_figures import figures

    return [
        evaluator_spec(
            "multimodal",
            evaluate_multimodal,
            "per-head accuracy (fusion, image, text, ensemble), modality utilisation by "
            "ablation (Wu et al. 2022), image vs token-embedding IG share, Grad-CAM",
            DIRECTIONS,
            requires=frozenset({MODALITY_HEADS}),
            figures=figures,
            glossary=GLOSSARY,
            reference="Wu, Jastrzebski, Cho & Geras 2022, Characterizing and Overcoming the "
            "Greedy Nature of Learning in Multi-modal Deep Neural Networks (ICML); the seed "
            "report's per-head table (shared/seeds/000, Que-1)",
            modalities=frozenset({IMAGE, TEXT}),
            version="2",  # 2: each head's accuracy on named and unnamed captions
        )
    ]
