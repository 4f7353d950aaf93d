"""What the datasets a user keeps on disk share: ``root``, checked when a suite is loaded, and
their official train / test split.

Fashion-MNIST, the full MNIST, CIFAR-10 and image folders cannot ship with a dependency, and
nothing downloads at run time (DESIGN.md): the user names the folder that holds them. A wrong
folder should not surface as a failed job after the planner has run, so ``root`` is annotated
with a pydantic ``AfterValidator`` that looks at the folder: ``bench plan`` (and ``bench run``)
check every parameter value against its annotation, defaults included, and turn the
validator's ``ValueError`` into the one-line suite error, exit status 2
(``benchmark.suite.checked_params``). The default ``None`` is refused the same way, saying what
to pass. A validator sees the component's other parameters as pydantic's validation context
(``benchmark.params``), which the image folder's ``csv`` check uses.

The validators only look at what is cheap (names, sizes, file headers); a malformed file
found while loading raises ``ValueError`` naming the file and what is wrong with it.

Their splits are the publishers' (``official_split``): ``train_limit`` / ``test_limit`` take
the same stratified subsets as ``mnist``'s (``plugins.datasets.splits``), and ``groups`` is
the class label, as for ``mnist`` (the fairness evaluator's class-wise view of bias).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import AfterValidator, ValidationInfo

from benchmark.specs import Dataset
from plugins.datasets.splits import to_split

Check = Callable[[Path], None]
"""Raises ``ValueError`` (naming the file and the expected layout) unless the folder fits."""


def root_path(root: str | None, layout: str) -> Path:
    """``root`` as a ``Path`` (``~`` expanded), or ``ValueError`` when it is not given or is not
    a folder; ``layout`` says what the folder should hold. Messages leave out the dataset and
    the parameter, which the plan-time check puts first (``named`` at load time)."""
    if root is None:
        raise ValueError(
            "required: the folder holding the files you have on disk, as params: "
            f"{{root: /path/to/folder}}; it should hold {layout}"
        )
    path = Path(root).expanduser()
    if not path.is_dir():
        what = "is a file, not a folder" if path.exists() else "does not exist"
        raise ValueError(f"{path} {what}; it should hold {layout}")
    return path


def named(dataset: str, parameter: str, check: Callable[[], Any]) -> Any:
    """``check()``, its ``ValueError`` prefixed as the plan-time check does (at load time)."""
    try:
        return check()
    except ValueError as exc:
        raise ValueError(f"parameter '{parameter}' of dataset '{dataset}': {exc}") from None


def root_param(layout: str, check: Check) -> Any:
    """The annotation of a dataset's ``root``: a folder path that ``check`` accepts."""

    def validate(root: str | None) -> str | None:
        check(root_path(root, layout))
        return root

    return Annotated[str | None, AfterValidator(validate)]


def context_param(
    check: Callable[[Any, dict[str, Any]], None], annotation: Any = str | None
) -> Any:
    """The annotation of a parameter whose check needs the others (``csv`` needs ``root``):
    ``check(value, params)`` sees every parameter value, or ``{}`` when checked on its own."""

    def validate(value: Any, info: ValidationInfo) -> Any:
        check(value, dict(info.context or {}))
        return value

    return Annotated[annotation, AfterValidator(validate)]


def listing(path: Path, limit: int = 8) -> str:
    """A short, sorted listing of a folder for an error message (what is there instead)."""
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    if not names:
        return "nothing"
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def official_split(
    name: str,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    class_names: tuple[str, ...],
    train_limit: int | None,
    test_limit: int | None,
) -> Dataset:
    """A dataset with the publisher's split, ``*_limit`` stratified subsets of it, and
    ``groups`` = the class label (a copy)."""
    splits = []
    for (x, y), which, limit in ((train, "train", train_limit), (test, "test", test_limit)):
        split = to_split(x, y, limit, f"{name} {which}_limit")
        splits.append(replace(split, groups=split.y.clone()))
    return Dataset(
        train=splits[0], test=splits[1], num_classes=len(class_names), class_names=class_names
    )
