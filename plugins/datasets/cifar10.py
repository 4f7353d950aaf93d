"""CIFAR-10 from the python batches the user has on disk (Krizhevsky 2009).

``root`` is the folder ``cifar-10-batches-py`` (what ``cifar-10-python.tar.gz`` extracts to,
and where torchvision's ``CIFAR10(root)`` keeps it) or the folder holding it. Five training
batches ``data_batch_1`` .. ``data_batch_5``, ``test_batch`` and ``batches.meta``: pickled
dicts, ``b"data"`` a ``uint8 (N, 3072)`` array (1,024 red, then green, then blue values of a
row-major 32x32 image), ``b"labels"`` a list of class indices, ``b"label_names"`` (in
``batches.meta``) the ten class names. The split is the official one (50,000 / 10,000);
``train_limit`` / ``test_limit`` take stratified subsets, ``groups`` is the class label
(``plugins.datasets.local_root``).

The batches are pickles, and unpickling a file runs whatever callables it names: a file that
is not what it claims could run ``os.system``. ``BatchUnpickler`` therefore resolves only the
few globals real batches need (numpy's array reconstruction and ``_codecs.encode``, which
Python 3 writes for bytes at protocol 2) and refuses every other one, naming the file.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.specs import Dataset, DatasetSpec
from plugins.datasets.local_root import listing, named, official_split, root_param, root_path
from plugins.datasets.splits import Limit

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
FILES = (*TRAIN_BATCHES, "test_batch", "batches.meta")
LAYOUT = (
    f"{FOLDER}/ (or be it) with {', '.join(FILES)}: the python version of CIFAR-10, "
    "cifar-10-python.tar.gz extracted"
)
SIDE = 32


def _allowed() -> dict[tuple[str, str], Any]:
    try:  # numpy >= 2
        from numpy._core import multiarray, numeric
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    import _codecs

    reconstruct, frombuffer = multiarray._reconstruct, numeric._frombuffer
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _codecs.encode,
    }
    for package in ("numpy.core", "numpy._core"):  # numpy 1.x and 2.x write different names
        allowed[(f"{package}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{package}.numeric", "_frombuffer")] = frombuffer
    return allowed


class BatchUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals a CIFAR batch needs (see the module
    docstring): a pickle naming any other (``os.system``, ``builtins.eval``) is refused with
    ``pickle.UnpicklingError`` before anything runs."""

    ALLOWED = _allowed()

    def find_class(self, module: str, name: str) -> Any:
        found = self.ALLOWED.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"refused to load global {module}.{name}")
        return found


def read_batch(path: Path) -> dict[str, Any]:
    """One batch as a dict with ``str`` keys; ``ValueError`` naming the file when it is not a
    pickled dict or names a global a batch does not need."""
    try:
        with path.open("rb") as f:
            loaded = BatchUnpickler(f, encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{path}: not a CIFAR-10 batch: {exc}") from None
    except (OSError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise ValueError(f"{path}: not a CIFAR-10 batch (unreadable pickle: {exc!r})") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: not a CIFAR-10 batch (a {type(loaded).__name__}, not a dict)")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in loaded.items()}


def batches_folder(root: Path) -> Path:
    """The folder holding the batch files (``root`` or ``root/cifar-10-batches-py``)."""
    for place in (root, root / FOLDER):
        if all((place / name).is_file() for name in FILES):
            return place
    place = root / FOLDER if (root / FOLDER).is_dir() else root
    missing = [name for name in FILES if not (place / name).is_file()]
    tarball = " (extract cifar-10-python.tar.gz first)" if any(root.glob("*.tar.gz")) else ""
    raise ValueError(
        f"{place} lacks {', '.join(missing)}{tarball} (it holds {listing(place)}); root "
        f"should hold {LAYOUT}"
    )


def _images_and_labels(path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = read_batch(path)
    for key in ("data", "labels"):
        if key not in batch:
            raise ValueError(f"{path}: not a CIFAR-10 batch (no {key!r} entry)")
    data, labels = batch["data"], np.asarray(batch["labels"])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        what = data.dtype if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{path}: 'data' must be a uint8 (N, 3072) array, got {what}")
    if data.shape[1] != 3 * SIDE * SIDE:
        raise ValueError(f"{path}: 'data' rows hold {data.shape[1]} values, not 3x32x32 = 3072")
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: 'labels' must be {len(data)} integers, got {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{path}: label {int(labels.max())} is not one of {num_classes} classes")
    return data.reshape(-1, 3, SIDE, SIDE), labels.astype(np.int64)


def _class_names(path: Path) -> tuple[str, ...]:
    names = read_batch(path).get("label_names")
    if not isinstance(names, list) or not names:
        raise ValueError(f"{path}: no 'label_names' list (the class names)")
    return tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)


def check_root(root: Path) -> None:
    """Plan-time check: every batch file is there (their contents are checked when read)."""
    batches_folder(root)


CifarRoot = root_param(LAYOUT, check_root)


def load_cifar10(
    root: CifarRoot = None, train_limit: Limit = None, test_limit: Limit = None
) -> Dataset:
    """CIFAR-10 from ``root``: 50,000 / 10,000 32x32 colour images, images ``(N, 3, 32, 32)``
    in [0, 1], class names from ``batches.meta``."""
    folder = named("cifar10", "root", lambda: batches_folder(root_path(root, LAYOUT)))
    classes = _class_names(folder / "batches.meta")
    pairs = [_images_and_labels(folder / name, len(classes)) for name in TRAIN_BATCHES]
    x_test, y_test = _images_and_labels(folder / "test_batch", len(classes))
    train = (
        np.concatenate([x for x, _ in pairs]) / np.float32(255),
        np.concatenate([y for _, y in pairs]),
    )
    test = (x_test / np.float32(255), y_test)
    return official_split("cifar10", train, test, classes, train_limit, test_limit)


def specs() -> list[DatasetSpec]:
    """``cifar10``, for ``plugins.datasets`` to register."""
    return [
        DatasetSpec(
            "cifar10",
            load_cifar10,
            "CIFAR-10 from the python batches under `root`, official 50,000/10,000 split; "
            "groups = the class label",
            version="1",
            provides=frozenset({"images", "groups"}),
        )
    ]
