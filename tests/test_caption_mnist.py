"""caption-mnist: every caption factor holds exactly per class, and the test tag is independent."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.modalities import PAD, TEXT_KEY, lengths
from plugins.datasets.caption_mnist import (
    DIGIT_WORDS,
    INDEX,
    MAX_TOKENS,
    NUMERALS,
    TAGS,
    VOCABULARY,
    caption_kinds,
    decode,
    load_caption_mnist,
)
from plugins.datasets.mnist import load_mnist

FACTORS = {"spurious_rate": 0.9, "name_rate": 0.7, "caption_noise": 0.1, "missing_rate": 0.1}


@pytest.fixture(scope="module")
def data():
    return load_caption_mnist(**FACTORS)


def test_images_and_labels_are_mnists(data):
    plain = load_mnist()
    assert torch.equal(data.train.x, plain.train.x) and torch.equal(data.test.y, plain.test.y)
    assert data.vocabulary == VOCABULARY and VOCABULARY[PAD] == "<pad>"
    assert data.train.extras[TEXT_KEY].shape == (4000, MAX_TOKENS)
    assert data.train.extras[TEXT_KEY].dtype == torch.int64


@pytest.mark.parametrize("split", ["train", "test"])
def test_caption_rates_are_exact_per_class(data, split):
    part = getattr(data, split)
    y = part.y.numpy()
    named = part.extras["named_digit"].numpy()
    missing = part.extras["caption_missing"].numpy()
    for c in range(10):
        rows = y == c
        n = int(rows.sum())
        n_named = round(FACTORS["name_rate"] * n)
        assert missing[rows].sum() == round(FACTORS["missing_rate"] * n)
        assert (named[rows] >= 0).sum() == n_named
        wrong = (named[rows] >= 0) & (named[rows] != c)
        assert wrong.sum() == round(FACTORS["caption_noise"] * n_named)
        assert not (named[rows][missing[rows]] >= 0).any()  # a missing caption names nothing


def test_training_tag_follows_the_class_at_the_spurious_rate(data):
    y, tag = data.train.y.numpy(), data.train.groups.numpy()
    for c in range(10):
        rows = y == c
        assert (tag[rows] == c).sum() == round(FACTORS["spurious_rate"] * rows.sum())
        off = np.bincount(tag[rows & (tag != c)], minlength=10)
        others = np.delete(off, c)
        assert others.max() - others.min() <= 1  # the rest spread over the other nine tags
    assert torch.equal(data.train.extras["bias_aligned"], data.train.groups == data.train.y)


def test_test_tag_is_independent_of_the_class(data):
    y, tag = data.test.y.numpy(), data.test.groups.numpy()
    table = np.zeros((10, 10), dtype=int)
    np.add.at(table, (y, tag), 1)
    # 100 test images per class: exactly 10 per (class, tag) cell, so P(tag | class) = P(tag)
    assert (table == 10).all()


def test_captions_say_what_the_extras_say(data):
    for part in (data.train, data.test):
        text = part.extras[TEXT_KEY]
        named = part.extras["named_digit"]
        missing = part.extras["caption_missing"]
        assert (text[missing] == PAD).all()
        assert (lengths(text[~missing]) > 0).all()
        words = decode(text)
        for i in range(0, len(words), 37):
            tokens = words[i].split()
            if missing[i]:
                assert tokens == []
                continue
            assert TAGS[int(part.groups[i])] in tokens  # the tag the groups say
            digit = int(named[i])
            said = [t for t in tokens if t in DIGIT_WORDS or t in NUMERALS]
            if digit < 0:
                assert said == []
            else:
                assert said in ([DIGIT_WORDS[digit]], [NUMERALS[digit]])
        # padding only after the last token
        after = torch.arange(MAX_TOKENS) >= lengths(text)[:, None]
        assert ((text == PAD) == after).all()


def test_numeral_and_word_synonyms_both_occur(data):
    text = data.train.extras[TEXT_KEY]
    numerals = torch.isin(text, torch.tensor([INDEX[t] for t in NUMERALS])).any(1).sum()
    words = torch.isin(text, torch.tensor([INDEX[t] for t in DIGIT_WORDS])).any(1).sum()
    assert abs(int(numerals) - int(words)) < 0.1 * (numerals + words)


def test_deterministic_and_factors_drawn_from_separate_streams():
    a = load_caption_mnist(spurious_rate=0.9, train_limit=500, test_limit=100)
    b = load_caption_mnist(spurious_rate=0.9, train_limit=500, test_limit=100)
    assert torch.equal(a.train.extras[TEXT_KEY], b.train.extras[TEXT_KEY])
    c = load_caption_mnist(spurious_rate=0.5, train_limit=500, test_limit=100)
    # another spurious rate moves the tags only, not which captions name which digit
    assert torch.equal(a.train.extras["named_digit"], c.train.extras["named_digit"])
    assert not torch.equal(a.train.groups, c.train.groups)
    d = load_caption_mnist(spurious_rate=0.9, seed=1, train_limit=500, test_limit=100)
    assert torch.equal(a.train.x, d.train.x)
    assert not torch.equal(a.train.extras[TEXT_KEY], d.train.extras[TEXT_KEY])


def test_caption_kinds_on_a_hand_counted_class():
    y = np.zeros(20, dtype=np.int64)
    named = caption_kinds(y, 0.5, 0.2, 0.25, np.random.default_rng(0), num_classes=10)
    assert (named == -2).sum() == 5 and (named >= 0).sum() == 10
    assert sorted(named[(named >= 0) & (named != 0)]) == [1, 2]  # 2 wrong: c+1, c+2


def test_bad_rates_are_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"name_rate .* missing_rate .* exceed 1"):
        load_caption_mnist(name_rate=0.8, missing_rate=0.3)
