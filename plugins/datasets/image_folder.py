"""Any labelled images the user has on disk: class folders or a CSV, optionally with groups.

``image-folder`` reads ``root`` laid out as class folders (``root/<class>/*.png``, classes in
sorted name order; ``root/train/<class>/`` and ``root/test/<class>/`` give the split) or, with
``csv``, a CSV of ``path,label[,group][,split]`` rows (``plugins.datasets.image_listing``).
Without a split in the data, a fixed stratified split keeps ``test_fraction`` of each class
for testing (seeded with ``splits.SPLIT_SEED``, the same on every run). Images are converted to
``channels`` (1: greyscale, 3: RGB) and resized to ``size = [H, W]`` (bilinear).

Groups need two specs, because a spec declares what it ``provides`` before any suite names a
CSV: ``image-folder`` provides ``images`` only (a ``group`` column, if any, is ignored), and
``image-folder-groups`` provides ``groups`` too and requires a CSV with a ``group`` column, so
Waterbirds- or CelebA-style metadata (bird type and background, attribute and gender) drives
the fairness evaluator and the supervised debiasers.

``bench plan`` lists the folders or reads the CSV (no image); an image that is missing or
unreadable is a ``ValueError`` naming the CSV line or folder and the file, when loading.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import Field, PositiveInt

from benchmark.specs import Dataset, DatasetSpec, Split
from plugins.datasets.image_listing import (
    FOLDER_LAYOUT,
    Listing,
    csv_path,
    list_csv,
    list_folders,
    read_images,
)
from plugins.datasets.local_root import context_param, named, root_path
from plugins.datasets.splits import Limit, stratified_split, subset_indices

Size = tuple[PositiveInt, PositiveInt]
"""``[H, W]`` every image is resized to."""
Channels = Literal[1, 3]
TestFraction = Annotated[float, Field(gt=0, lt=1)]
LAYOUT = f"{FOLDER_LAYOUT}; or, with params csv, the images a CSV names"


def _train_test(listing: Listing, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Sorted indices of the training and test images: the data's split, else stratified."""
    if listing.is_test is not None:
        return np.flatnonzero(~listing.is_test), np.flatnonzero(listing.is_test)
    n = len(listing.labels)
    try:
        train, test, _, _ = stratified_split(
            np.arange(n), listing.labels, max(1, round(n * test_fraction))
        )
    except ValueError as exc:
        raise ValueError(
            f"cannot split {n} images with test_fraction {test_fraction}: {exc}"
        ) from None
    return np.sort(train), np.sort(test)


def _check_split(listing: Listing, params: dict[str, Any]) -> None:
    """With the other parameters at hand (plan time), the stratified split must be possible."""
    if "test_fraction" in params:
        _train_test(listing, params["test_fraction"])


def _check_root(groups: bool, root: str | None, params: dict[str, Any]) -> None:
    """``root`` is a folder; with no ``csv``, one of class folders (the listing, no image)."""
    folder = root_path(root, LAYOUT)
    if groups or "csv" not in params or params["csv"] is not None:
        return  # a CSV names the images (checked with ``csv``), or checked on its own
    try:
        listing = list_folders(folder)
    except ValueError as exc:
        raise ValueError(f"{exc}; root should hold {LAYOUT}") from None
    _check_split(listing, params)


def _check_csv(groups: bool, csv: str | None, params: dict[str, Any]) -> None:
    """``csv`` (relative to ``root``) has the columns and rows the layout needs."""
    if csv is None:
        if groups:
            raise ValueError(
                "required: the groups come from a CSV, as params: {root: /path/to/folder, "
                "csv: data.csv}; the CSV has a header row and columns path,label,group, "
                "optionally split (train or test); an image path is relative to root or absolute"
            )
        return
    try:
        folder = root_path(params.get("root"), LAYOUT)
    except ValueError:  # root's own check says what is wrong with it
        if not Path(csv).expanduser().is_absolute():
            return
        folder = Path(csv).expanduser().parent
    _check_split(list_csv(folder, csv_path(folder, csv), groups), params)


FolderRoot = context_param(partial(_check_root, False))
GroupsRoot = context_param(partial(_check_root, True))
FolderCsv = context_param(partial(_check_csv, False))
GroupsCsv = context_param(partial(_check_csv, True))


def load_images(
    name: str,
    root: str | None,
    csv: str | None,
    size: tuple[int, int],
    channels: int,
    test_fraction: float,
    limits: tuple[int | None, int | None],
    groups: bool,
) -> Dataset:
    """Both variants: list, split, cut to the limits, then read only the images kept."""
    folder = named(name, "root", lambda: root_path(root, LAYOUT))
    if groups and csv is None:
        named(name, "csv", lambda: _check_csv(groups, csv, {}))
    if csv is None:
        listing = named(name, "root", lambda: list_folders(folder))
    else:
        listing = named(name, "csv", lambda: list_csv(folder, csv_path(folder, csv), groups))
    splits = []
    parts = named(name, "test_fraction", lambda: _train_test(listing, test_fraction))
    for rows, which, limit in zip(parts, ("train", "test"), limits, strict=True):
        rows = rows[np.sort(subset_indices(listing.labels[rows], limit, f"{name} {which}_limit"))]
        splits.append(
            Split(
                x=torch.from_numpy(read_images(listing, rows, tuple(size), channels)),
                y=torch.from_numpy(listing.labels[rows]),
                groups=torch.from_numpy(listing.groups[rows])
                if groups and listing.groups is not None
                else None,
            )
        )
    return Dataset(
        train=splits[0],
        test=splits[1],
        num_classes=len(listing.class_names),
        class_names=listing.class_names,
    )


def load_image_folder(
    root: FolderRoot = None,
    csv: FolderCsv = None,
    size: Size = (32, 32),
    channels: Channels = 3,
    test_fraction: TestFraction = 0.2,
    train_limit: Limit = None,
    test_limit: Limit = None,
) -> Dataset:
    """Labelled images under ``root`` (class folders, or the CSV ``csv``); no groups."""
    return load_images(
        "image-folder", root, csv, size, channels, test_fraction, (train_limit, test_limit), False
    )


def load_image_folder_groups(
    root: GroupsRoot = None,
    csv: GroupsCsv = None,
    size: Size = (32, 32),
    channels: Channels = 3,
    test_fraction: TestFraction = 0.2,
    train_limit: Limit = None,
    test_limit: Limit = None,
) -> Dataset:
    """Labelled images with a group each, from the CSV ``csv`` (relative to ``root``)."""
    return load_images(
        "image-folder-groups",
        root,
        csv,
        size,
        channels,
        test_fraction,
        (train_limit, test_limit),
        True,
    )


def specs() -> list[DatasetSpec]:
    """``image-folder`` and ``image-folder-groups``, for ``plugins.datasets`` to register."""
    return [
        DatasetSpec(
            "image-folder",
            load_image_folder,
            "labelled images under `root`: class folders or a CSV of path,label; resized to "
            "`size`, fixed stratified split unless the data gives one",
            version="1",
            provides=frozenset({"images"}),
        ),
        DatasetSpec(
            "image-folder-groups",
            load_image_folder_groups,
            "labelled images with groups from a CSV of path,label,group under `root` "
            "(Waterbirds / CelebA style metadata)",
            version="1",
            provides=frozenset({"images", "groups"}),
        ),
    ]
