"""Which image files an ``image-folder`` dataset holds, with their labels, groups and split, and
reading them (PIL, the imaging library torchvision ships with; licence HPND / MIT-CMU).

Two layouts (``plugins.datasets.image_folder`` documents them for users):

* class folders: ``root/<class>/*.png|jpg|jpeg|bmp``, or ``root/train/<class>/...`` with
  ``root/test/<class>/...``, the folders' own split; classes in sorted name order;
* a CSV with columns ``path,label`` and optionally ``group`` and ``split`` (``train`` /
  ``test``); an image path is relative to ``root`` unless absolute.

Labels (and groups) that are all integers are kept as the class (group) index; names are
numbered in sorted order. Listing reads no image, so ``bench plan`` can do it; ``read_images``
decodes one file at a time (PIL has no batch decoder) into one preallocated array.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp"})
FOLDER_LAYOUT = (
    "a sub-folder of .png/.jpg/.jpeg/.bmp images per class (root/<class>/*.png, or "
    "root/train/<class>/ and root/test/<class>/)"
)
CSV_LAYOUT = (
    "the CSV has a header row and columns path,label, optionally group and split (train or "
    "test); an image path is relative to root or absolute"
)


@dataclass(frozen=True)
class Listing:
    """The images of a dataset, before any is read."""

    paths: tuple[Path, ...]
    labels: np.ndarray
    """``int64 (N,)`` class index per image."""
    class_names: tuple[str, ...]
    sources: tuple[str, ...]
    """Where each image was named (``data.csv:3``, or the class folder), for error messages."""
    groups: np.ndarray | None = None
    """``int64 (N,)`` from the CSV's ``group`` column, if asked for."""
    is_test: np.ndarray | None = None
    """``bool (N,)`` when the data fixes the split (train/ and test/, a ``split`` column)."""


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def _class_folders(folder: Path, minimum: int = 2) -> dict[str, list[Path]]:
    """``class name -> sorted image paths`` of the sub-folders of ``folder`` (at least
    ``minimum`` of them: a classifier needs two classes, a test folder one)."""
    classes: dict[str, list[Path]] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images = sorted(p for p in sub.iterdir() if _is_image(p))
        if not images:
            raise ValueError(f"class folder {sub} holds no .png/.jpg/.jpeg/.bmp image")
        classes[sub.name] = images
    if len(classes) < minimum:
        need = "a classifier needs two" if minimum == 2 else f"expected {minimum}"
        raise ValueError(f"{folder} has {len(classes)} class sub-folders; {need}")
    return classes


def list_folders(root: Path) -> Listing:
    """The class-folder layout (with its own split when ``train/`` and ``test/`` are there)."""
    if (root / "train").is_dir() and (root / "test").is_dir():
        train, test = _class_folders(root / "train"), _class_folders(root / "test", minimum=1)
        unknown = sorted(set(test) - set(train))
        if unknown:
            raise ValueError(f"{root / 'test'}: classes {unknown} have no training images")
        parts = [(train, False), (test, True)]
    else:
        train = _class_folders(root)
        parts = [(train, False)]
    names = tuple(train)
    index = {name: i for i, name in enumerate(names)}
    paths, labels, sources, is_test = [], [], [], []
    for classes, test_part in parts:
        for name, images in classes.items():
            paths += images
            labels += [index[name]] * len(images)
            sources += [str(images[0].parent)] * len(images)
            is_test += [test_part] * len(images)
    return Listing(
        paths=tuple(paths),
        labels=np.asarray(labels, dtype=np.int64),
        class_names=names,
        sources=tuple(sources),
        is_test=np.asarray(is_test) if len(parts) == 2 else None,
    )


def _codes(values: list[str], what: str, where: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Integer codes and names: integers as given (names ``"0"`` .. ``"max"``), else names
    numbered in sorted order."""
    try:
        ints = np.asarray([int(v) for v in values], dtype=np.int64)
    except ValueError:
        names = tuple(sorted(set(values)))
        index = {name: i for i, name in enumerate(names)}
        return np.asarray([index[v] for v in values], dtype=np.int64), names
    if ints.size and ints.min() < 0:
        raise ValueError(f"{where}: integer {what} values must be >= 0, got {int(ints.min())}")
    return ints, tuple(str(i) for i in range(int(ints.max()) + 1 if ints.size else 0))


def csv_path(root: Path, csv_name: str) -> Path:
    """A path named in a suite or a CSV: absolute, or relative to ``root``."""
    path = Path(csv_name).expanduser()
    return path if path.is_absolute() else root / path


def read_csv_header(path: Path, groups: bool) -> list[str]:
    """The CSV's columns, checked: ``path`` and ``label`` (and ``group`` when ``groups``)."""
    if not path.is_file():
        raise ValueError(f"{path} {'is not a file' if path.exists() else 'does not exist'}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{path}: unreadable CSV ({exc})") from None
    columns = [c.strip() for c in header]
    needed = ["path", "label", *(["group"] if groups else [])]
    missing = [c for c in needed if c not in columns]
    if missing:
        raise ValueError(
            f"{path}: no column {', '.join(missing)} in its header row {columns}; {CSV_LAYOUT}"
        )
    return columns


def list_csv(root: Path, path: Path, groups: bool) -> Listing:
    """The CSV layout; ``ValueError`` naming the file and line of a row that does not fit."""
    columns = read_csv_header(path, groups)
    rows: list[dict[str, str]] = []
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        next(reader)
        for line, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(columns):
                raise ValueError(f"{path}:{line}: {len(row)} cells for {len(columns)} columns")
            record = {c: cell.strip() for c, cell in zip(columns, row, strict=True)}
            for column in ("path", "label", *(["group"] if groups else [])):
                if not record[column]:
                    raise ValueError(f"{path}:{line}: empty '{column}'")
            if "split" in record and record["split"].lower() not in ("train", "test"):
                raise ValueError(
                    f"{path}:{line}: split {record['split']!r} is neither 'train' nor 'test'"
                )
            record["line"] = str(line)
            rows.append(record)
    if not rows:
        raise ValueError(f"{path}: no rows after the header")
    if "split" in columns and len({r["split"].lower() for r in rows}) < 2:
        raise ValueError(f"{path}: its split column marks every row {rows[0]['split']!r}")
    labels, names = _codes([r["label"] for r in rows], "label", str(path))
    group_codes = _codes([r["group"] for r in rows], "group", str(path))[0] if groups else None
    return Listing(
        paths=tuple(csv_path(root, r["path"]) for r in rows),
        labels=labels,
        class_names=names,
        sources=tuple(f"{path}:{r['line']}" for r in rows),
        groups=group_codes,
        is_test=np.asarray([r["split"].lower() == "test" for r in rows])
        if "split" in columns
        else None,
    )


def read_images(
    listing: Listing, keep: np.ndarray, size: tuple[int, int], channels: int
) -> np.ndarray:
    """``float32 (len(keep), channels, H, W)`` in [0, 1]: the images at ``keep``, converted to
    greyscale or RGB and resized (bilinear) to ``size = (H, W)`` where they differ."""
    from PIL import Image, UnidentifiedImageError  # lazy: keeps `bench` start-up fast

    height, width = size
    mode = "L" if channels == 1 else "RGB"
    out = np.empty((len(keep), height, width, channels), dtype=np.uint8)
    for slot, i in enumerate(keep):
        path = listing.paths[i]
        try:
            with Image.open(path) as image:
                converted = image.convert(mode)
        except FileNotFoundError:
            raise ValueError(f"{listing.sources[i]}: image {path} does not exist") from None
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise ValueError(f"{listing.sources[i]}: {path}: unreadable image ({exc})") from None
        if converted.size != (width, height):
            converted = converted.resize((width, height), Image.Resampling.BILINEAR)
        out[slot] = np.asarray(converted).reshape(height, width, channels)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2)) / np.float32(255)
