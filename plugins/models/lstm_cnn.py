"""lstm-cnn: the seed report's multimodal network, an LSTM text branch beside a CNN image branch.

The report (``shared/seeds/000``, Que-1, "Network Architecture (LSTM-CNN)"): "The text is first
passed to the LSTM network. Correspondingly the image is passed to the CNN network. The final
embeddings from both ... are concatenated to pass to the final classification layer"; its MTL
variant also passes "LSTM and CNN embeddings ... on to the classification layer to get their
respective logits" (``Z_CNN``, ``Z_LSTM``) and trains the three together (the
``mtl-multimodal`` training procedure, ``plugins.debiasers.mtl_multimodal``). Its backbones are
ResNet and ShuffleNet.

Here the image branch is any registered image model that keeps the bottleneck contract
(``linear-head``: its last ``nn.Linear`` is its classifier, applied last to a flat feature
vector, ``plugins.models.bottleneck``), chosen by name with ``backbone`` (``resnet18``,
``shufflenet``, ``seed-cnn`` or a third party's), built exactly as that model's spec builds it
with its default parameters; its own classifier becomes the image head ``Z_CNN``, and the
features it read are the image embedding. The text branch embeds the tokens
(``embedding_dim``, the padding token's embedding fixed at zero), runs a one-layer LSTM
(``hidden_size``) and takes its output at the last token of each caption (padding comes after
it, so it never reaches that output; a missing caption, all padding, reads the LSTM's answer
to the zero vector: a learnt "no caption" embedding). ``Z_LSTM`` is a linear head on it, and
the fusion head ``Z_Fus`` a linear layer on the concatenated embeddings. ``forward(x, text)``
returns ``Z_Fus``: the single-head network's output, and the MTL network's main prediction.

What the evaluators use besides ``forward`` (the ``modality-heads`` capability):
``branch_logits(x, text) -> {"fusion", "image", "text"}``, ``embed(text)`` and
``fused_from_embeddings(x, embedded, text)`` (integrated gradients over the token embeddings:
token indices have no gradient), ``head_weights`` (a buffer ``[1, a1, a2]`` the training
procedure sets, saved with the weights: a head trained with weight 0 is an untrained readout
and is not scored) and ``image_target_layer`` (the backbone's Grad-CAM layer, under ``image.``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch
from pydantic import PositiveInt
from torch import nn

from benchmark.modalities import IMAGE, PAD, TEXT, lengths
from benchmark.specs import ModelSpec
from plugins.models.bottleneck import LINEAR_HEAD, classifier_path, replace_classifier

MODALITY_HEADS = "modality-heads"
"""Tag of a model with per-modality heads (``branch_logits``, ``head_weights``)."""
HEADS = ("fusion", "image", "text")


@lru_cache(maxsize=8)
def _backbone_spec(name: str) -> ModelSpec:
    from benchmark.registry import Registry  # lazy: a model module must not load the registry

    spec = Registry.load().get("model", name, where="lstm-cnn backbone")
    if LINEAR_HEAD not in spec.provides or spec.modalities != {IMAGE}:
        raise ValueError(
            f"lstm-cnn: backbone '{name}' must be an image-only model that provides "
            f"'{LINEAR_HEAD}' (its last nn.Linear is its classifier), such as resnet18, "
            "shufflenet or seed-cnn"
        )
    return spec


class LSTMCNN(nn.Module):
    """Image backbone + LSTM over token embeddings, a head per branch and a fusion head."""

    def __init__(
        self,
        image: nn.Module,
        num_classes: int,
        vocabulary_size: int,
        embedding_dim: int,
        hidden_size: int,
        image_target_layer: str = "",
    ) -> None:
        super().__init__()
        path = classifier_path(image)
        image_head = image.get_submodule(path)
        self.image = replace_classifier(image, nn.Identity())
        self.image_head = image_head
        self.embedding = nn.Embedding(vocabulary_size, embedding_dim, padding_idx=PAD)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, batch_first=True)
        self.text_head = nn.Linear(hidden_size, num_classes)
        self.fusion = nn.Linear(image_head.in_features + hidden_size, num_classes)
        self.register_buffer("head_weights", torch.tensor([1.0, 0.0, 0.0]))
        self.image_target_layer = f"image.{image_target_layer}" if image_target_layer else ""

    def embed(self, text: torch.Tensor) -> torch.Tensor:
        """``(N, L, embedding_dim)`` token embeddings."""
        return self.embedding(text)

    def _text_features(self, embedded: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(embedded)
        last = (lengths(text) - 1).clamp(min=0)
        return out[torch.arange(len(out), device=out.device), last]

    def _branches(
        self, x: torch.Tensor, embedded: torch.Tensor, text: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.image(x).flatten(1), self._text_features(embedded, text)

    def branch_logits(self, x: torch.Tensor, text: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each head's logits: ``fusion`` (``Z_Fus``), ``image`` (``Z_CNN``), ``text``
        (``Z_LSTM``), from one pass through the two branches."""
        image, words = self._branches(x, self.embed(text), text)
        return {
            "fusion": self.fusion(torch.cat([image, words], dim=1)),
            "image": self.image_head(image),
            "text": self.text_head(words),
        }

    def fused_from_embeddings(
        self, x: torch.Tensor, embedded: torch.Tensor, text: torch.Tensor
    ) -> torch.Tensor:
        """``Z_Fus`` from the images and given token embeddings (``text`` gives the lengths)."""
        image, words = self._branches(x, embedded, text)
        return self.fusion(torch.cat([image, words], dim=1))

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.fused_from_embeddings(x, self.embed(text), text)


def build_lstm_cnn(
    num_classes: int,
    input_shape: tuple[int, int, int],
    vocabulary_size: int,
    backbone: str = "resnet18",
    embedding_dim: PositiveInt = 32,
    hidden_size: PositiveInt = 64,
) -> LSTMCNN:
    """The network for a dataset's classes, image shape and vocabulary (the runner passes
    ``vocabulary_size``: ``benchmark.modalities``)."""
    if not isinstance(vocabulary_size, int) or vocabulary_size < 2:
        raise ValueError(
            f"lstm-cnn: needs a dataset with a vocabulary (text), got vocabulary_size "
            f"{vocabulary_size!r}"
        )
    spec = _backbone_spec(str(backbone))
    image: Any = spec.factory(num_classes, input_shape, **spec.params)
    return LSTMCNN(
        image, num_classes, vocabulary_size, embedding_dim, hidden_size, spec.target_layer
    )


DESCRIPTION = (
    "the seed report's LSTM-CNN: a registered image backbone (resnet18, shufflenet, ...) and "
    "an LSTM over the caption, concatenated into a fusion head, plus an image and a text head"
)


def specs() -> list[ModelSpec]:
    """``lstm-cnn``, for ``plugins.models`` to register."""
    return [
        ModelSpec(
            "lstm-cnn",
            build_lstm_cnn,
            DESCRIPTION,
            version="1",
            # the fusion head is the last nn.Linear, applied last to the flat joint features
            provides=frozenset({"differentiable", LINEAR_HEAD, MODALITY_HEADS}),
            modalities=frozenset({IMAGE, TEXT}),
        )
    ]
