"""Representation and re-weighting debiasers: EnD, IRENE (supervised), LfF, JTT and
bottleneck re-weighting (unsupervised).

Every debiaser trains one epoch on 300 real MNIST images with hand-set group labels and must
return the input architecture in eval mode, deterministically. The unsupervised ones must be
*blind* to groups: true, shuffled and absent labels give bit-identical weights, and a split
whose ``groups`` attribute raises still trains. The pieces are checked by hand: GCE values,
LfF's EMAs and relative difficulty, JTT's error set and up-weighting, EnD's Gram terms,
IRENE's mutual information (against scikit-learn), and the online dominant cluster.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from dataclasses import asdict

import pytest
import torch
from sklearn.metrics import mutual_info_score
from torch import nn

from benchmark.kit.training import TRAINING, train_loop
from benchmark.specs import Split
from plugins.datasets.mnist import load_mnist
from plugins.debiasers import bottleneck_reweight, end, irene, jtt, lff
from plugins.debiasers.bottleneck_reweight import (
    DominantClusters,
    SampleScores,
    clean_features,
    distance_weights,
)
from plugins.debiasers.end import end_terms
from plugins.debiasers.erm import train_erm
from plugins.debiasers.irene import normalised_mutual_information
from plugins.debiasers.jtt import error_set, upsampled_rows
from plugins.debiasers.lff import SampleLossEMA, generalized_cross_entropy, relative_difficulty
from plugins.models.bottleneck import forward_with_features
from plugins.models.seed_cnn import build_seed_cnn

MODULES = {
    "end": end,
    "irene": irene,
    "lff": lff,
    "jtt": jtt,
    "bottleneck-reweight": bottleneck_reweight,
}
SPECS = {spec.name: spec for module in MODULES.values() for spec in module.specs()}
SUPERVISED = ("end", "irene")
UNSUPERVISED = ("lff", "jtt", "bottleneck-reweight")
LINEAR_HEAD = ("end", "irene", "bottleneck-reweight")
"""The ones that read the bottleneck, the input of the model's final linear layer."""
# one short epoch each; bottleneck-reweight without warm-up so its weighting actually runs
FAST = {
    "end": {"epochs": 1},
    "irene": {"epochs": 1},
    "lff": {"epochs": 1},
    "jtt": {"epochs": 1, "first_epochs": 1},
    "bottleneck-reweight": {"epochs": 1, "warmup_epochs": 0},
}


class GroupsForbidden(Split):
    """A split whose ``groups`` attribute raises: proof that a debiaser never looks at it (the
    other debiaser tests import it)."""

    def __getattribute__(self, name: str):
        if name == "groups":
            raise AssertionError("the debiaser read data.groups")
        return super().__getattribute__(name)


@pytest.fixture(scope="module")
def mnist():
    return load_mnist(train_limit=300, test_limit=100)


@pytest.fixture(scope="module")
def train(mnist) -> Split:
    """The training split with hand-set groups: alternate rows, so every class has both."""
    n = len(mnist.train)
    return dataclasses.replace(mnist.train, groups=torch.arange(n) % 2)


def fit(name: str, data: Split, seed: int = 0, **params) -> nn.Module:
    torch.manual_seed(123)  # the same initial weights for every fit
    model = build_seed_cnn(10, (1, 28, 28))
    return SPECS[name].factory(model, data, seed=seed, **{**FAST[name], **params})


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- registration -------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MODULES))
def test_spec_names_the_debiaser_and_its_real_defaults(name):
    spec = SPECS[name]
    assert (
        spec.name == name
        and spec.kind == "debiaser"
        and spec.version == ("2" if name == "jtt" else "1")
    )
    assert spec.description and "\n" not in spec.description
    expected = {"groups", "bias_attribute"} if name in SUPERVISED else set()
    if name in LINEAR_HEAD:
        expected.add("linear-head")
    assert spec.requires == expected
    signature = inspect.signature(spec.factory).parameters
    own = {
        key: p.default
        for key, p in signature.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and key != "seed"
    }
    # what a suite sees is what the function uses; the shared parameters come from the spec
    assert signature["training"].kind is inspect.Parameter.VAR_KEYWORD
    assert spec.training == TRAINING and not set(own) & set(asdict(TRAINING))
    assert dict(spec.params) == {**own, **asdict(TRAINING)}


@pytest.mark.parametrize("name", ["jtt", "lff"])
def test_a_direct_call_trains_with_the_spec_defaults(name, train):
    spelled_out = {**SPECS[name].params, **FAST[name]}
    assert same_weights(fit(name, train), fit(name, train, **spelled_out))


# --- the debiaser contract ----------------------------------------------------------------


@pytest.mark.parametrize("name", list(MODULES))
def test_trains_one_epoch_and_returns_the_input_architecture_in_eval_mode(name, mnist, train):
    torch.manual_seed(123)
    reference = build_seed_cnn(10, (1, 28, 28))
    out = fit(name, train)
    assert isinstance(out, type(reference)) and not out.training
    assert out.state_dict().keys() == reference.state_dict().keys()
    assert not same_weights(out, reference)  # it trained
    with torch.no_grad():
        logits = out(mnist.test.x)
    assert logits.shape == (len(mnist.test), 10) and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", list(MODULES))
def test_same_seed_gives_identical_weights_and_another_seed_does_not(name, train):
    a = fit(name, train, seed=0)
    torch.manual_seed(999)  # the global RNG state before the call must not matter
    b = fit(name, train, seed=0)
    assert same_weights(a, b)
    assert not same_weights(a, fit(name, train, seed=1))


@pytest.mark.parametrize("name", SUPERVISED)
def test_supervised_debiasers_refuse_a_split_without_groups(name, train):
    no_groups = dataclasses.replace(train, groups=None)
    with pytest.raises(ValueError, match=rf"'{name}' is supervised.*group labels"):
        fit(name, no_groups)


@pytest.mark.parametrize("name", SUPERVISED)
def test_supervised_debiasers_use_the_groups(name, train):
    flipped = dataclasses.replace(train, groups=1 - train.groups)
    shuffled = dataclasses.replace(train, groups=train.groups[torch.randperm(len(train))])
    a = fit(name, train)
    assert not same_weights(a, fit(name, shuffled))
    if name == "end":  # EnD's terms only compare labels, so a relabelling changes nothing
        assert same_weights(a, fit(name, flipped))


@pytest.mark.parametrize("name", UNSUPERVISED)
def test_unsupervised_debiasers_are_blind_to_groups(name, train):
    a = fit(name, train)
    generator = torch.Generator().manual_seed(7)
    shuffled = train.groups[torch.randperm(len(train), generator=generator)]
    assert not torch.equal(shuffled, train.groups)
    assert same_weights(a, fit(name, dataclasses.replace(train, groups=shuffled)))
    assert same_weights(a, fit(name, dataclasses.replace(train, groups=None)))
    guarded = GroupsForbidden(x=train.x, y=train.y, groups=train.groups)
    with pytest.raises(AssertionError, match=r"read data\.groups"):
        _ = guarded.groups
    assert same_weights(a, fit(name, guarded))


# --- LfF ----------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.9, 0.5, 0.25, 0.01])
def test_gce_is_one_minus_p_to_the_q_over_q(p):
    rest = (1.0 - p) / 2
    logits = torch.tensor([[math.log(rest), math.log(p), math.log(rest)]])
    target = torch.tensor([1])
    value = generalized_cross_entropy(logits, target, q=0.7)
    assert value.item() == pytest.approx((1 - p**0.7) / 0.7, rel=1e-6)
    # q = 1 is the mean absolute error 1 - p
    assert generalized_cross_entropy(logits, target, q=1.0).item() == pytest.approx(1 - p)


def test_gce_by_hand_and_its_gradient_is_p_to_the_q_times_ce():
    # p = 0.25: 0.25^0.7 = exp(0.7 ln 0.25) = 0.378929, (1 - 0.378929) / 0.7 = 0.887244
    logits = torch.log(torch.tensor([[0.25, 0.75]])).requires_grad_(True)
    target = torch.tensor([0])
    gce = generalized_cross_entropy(logits, target)
    assert gce.item() == pytest.approx(0.887244, abs=1e-6)
    (g_gce,) = torch.autograd.grad(gce.sum(), logits)
    (g_ce,) = torch.autograd.grad(nn.functional.cross_entropy(logits, target), logits)
    assert torch.allclose(g_gce, 0.25**0.7 * g_ce, atol=1e-7)


def test_lff_loss_ema_first_visit_then_smoothing_and_class_max():
    labels = torch.tensor([0, 0, 1, 1, 1])
    ema = SampleLossEMA(labels, num_classes=2, alpha=0.7)
    ema.update(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([0, 1, 2, 3]))
    assert torch.allclose(ema.value, torch.tensor([1.0, 2.0, 3.0, 4.0, 0.0]))  # raw first visit
    ema.update(torch.tensor([3.0, 2.0, 1.0, 0.0]), torch.tensor([0, 1, 2, 3]))
    # 0.7 * old + 0.3 * new; row 4 was never visited and stays 0
    assert torch.allclose(ema.value, torch.tensor([1.6, 2.0, 2.4, 2.8, 0.0]))
    assert torch.allclose(ema.class_max(), torch.tensor([2.0, 2.8]))
    normalised = ema.normalised(torch.tensor([0, 2, 4]))
    assert torch.allclose(normalised, torch.tensor([0.8, 2.4 / 2.8, 0.0]))
    ema.update(torch.tensor([5.0]), torch.tensor([4]))  # first visit of row 4: raw again
    assert ema.value[4] == 5.0 and ema.class_max()[1] == 5.0


def test_lff_relative_difficulty_weights_what_the_biased_model_fails_on():
    # aligned: the biased model fits it (low loss); conflicting: the biased model fails on it
    loss_b = torch.tensor([0.1, 0.9, 0.5, 0.0])
    loss_d = torch.tensor([0.9, 0.1, 0.5, 0.0])
    w = relative_difficulty(loss_b, loss_d)
    assert torch.allclose(w, torch.tensor([0.1, 0.9, 0.5, 0.0]), atol=1e-7)
    assert w[1] > w[2] > w[0]  # conflicting > ambiguous > aligned, and 0/0 stays finite


def test_lff_biased_model_is_a_separately_initialised_copy():
    torch.manual_seed(0)
    model = build_seed_cnn(10, (1, 28, 28))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    copy_a = lff.reinitialised_copy(model, 5)
    copy_b = lff.reinitialised_copy(model, 5)
    assert same_weights(copy_a, copy_b) and not same_weights(copy_a, model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# --- JTT ----------------------------------------------------------------------------------


class FixedPredictions(nn.Module):
    """Logits read straight from the input: the prediction is ``argmax`` of ``x`` itself."""

    def __init__(self) -> None:
        super().__init__()
        self.dropout = nn.Dropout(0.9)  # would scramble a train-mode prediction

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(x.flatten(1))


def test_jtt_error_set_is_the_misclassified_rows_in_eval_mode():
    predictions = torch.tensor([0, 2, 1, 1, 0])
    labels = torch.tensor([0, 1, 1, 2, 0])
    x = nn.functional.one_hot(predictions, 3).float().view(5, 1, 1, 3)
    model = FixedPredictions().train()
    errors = error_set(model, Split(x=x, y=labels), batch_size=2)
    assert errors.tolist() == [False, True, False, True, False]
    assert model.training  # the mode it was in comes back


def test_jtt_upsamples_the_error_set_lambda_times_as_the_reference():
    """The reference's stage-2 data: every row once plus each error-set row ``lambda - 1``
    more times, so an error-set row appears ``lambda`` times in an epoch."""
    errors = torch.tensor([False, True, False, True])
    rows = upsampled_rows(errors, 50)
    assert len(rows) == 4 + 2 * 49
    assert torch.bincount(rows, minlength=4).tolist() == [1, 50, 1, 50]
    assert upsampled_rows(errors, 1).tolist() == [0, 1, 2, 3]
    for bad in (0, 0.5, True):
        with pytest.raises(ValueError, match="lambda_up"):
            upsampled_rows(errors, bad)


def test_train_loop_epoch_rows_visit_every_listed_row_once_per_epoch():
    seen: list[int] = []
    model = nn.Linear(2, 2)
    data = Split(x=torch.zeros(4, 2), y=torch.zeros(4, dtype=torch.int64))

    def step(batch):
        seen.extend(batch.index.tolist())
        return model(batch.x).sum()

    rows = torch.tensor([0, 1, 1, 1, 3])
    train_loop(model, data, step, seed=0, epochs=2, batch_size=2, epoch_rows=rows)
    assert sorted(seen) == sorted(rows.tolist() * 2)
    with pytest.raises(ValueError, match="epoch_rows"):
        train_loop(model, data, step, seed=0, epoch_rows=torch.tensor([4]))


def test_jtt_with_lambda_one_is_erm_restarted_from_the_initial_weights(train):
    """Stage 2 starts again from the weights the model had before stage 1, with fresh
    optimiser state: with no up-weighting it is exactly ERM from the start."""
    torch.manual_seed(123)
    model = build_seed_cnn(10, (1, 28, 28))
    erm = train_erm(model, train, seed=0, optimizer="adam", lr=1e-3, epochs=1)
    assert same_weights(erm, fit("jtt", train, lambda_up=1))
    assert not same_weights(erm, fit("jtt", train, lambda_up=50))


# --- EnD ----------------------------------------------------------------------------------


def test_end_orthogonal_same_bias_pairs_have_zero_disentangle_term():
    e = torch.eye(4)
    y = torch.tensor([0, 1, 0, 1])
    b = torch.tensor([0, 0, 1, 1])
    # same bias, different class: (0, 1) and (2, 3), orthogonal; same class, other bias:
    # (0, 2) parallel and (1, 3) orthogonal
    features = torch.stack([e[0], e[1], e[0], e[2]])
    disentangle, entangle = end_terms(features, y, b)
    assert disentangle.item() == pytest.approx(0.0)
    assert entangle.item() == pytest.approx((0.0 + 0.5) / 2)


def test_end_terms_by_hand():
    s = 1 / math.sqrt(2)
    y = torch.tensor([0, 1, 0, 1])
    b = torch.tensor([0, 0, 1, 1])
    # pair (0, 1) at 45 degrees: |cos| = 0.7071 for bias 0; pair (2, 3) orthogonal for bias 1
    features = torch.tensor([[1.0, 0, 0], [s, s, 0], [0, 0, 1], [0, 1, 0]]) * 3.0  # scale-free
    disentangle, entangle = end_terms(features, y, b)
    assert disentangle.item() == pytest.approx((s + 0.0) / 2, abs=1e-6)
    # (0, 2): cos 0 -> 0.5; (1, 3): cos s -> (1 - s) / 2
    assert entangle.item() == pytest.approx((0.5 + (1 - s) / 2) / 2, abs=1e-6)


def test_end_disentangles_the_absolute_sum_per_bias_label_as_the_reference():
    # three samples of bias 0, classes 0, 1, 2: cosines +0.5 (0,1), -0.5 (0,2), +0.5 (1,2);
    # the reference takes |sum| per bias label (not the sum of |cos|), so two of them cancel
    r = math.sqrt(3) / 2
    features = torch.tensor([[1.0, 0.0], [0.5, r], [-0.5, r]])  # cosines 0.5, -0.5, 0.5
    y, b = torch.tensor([0, 1, 2]), torch.zeros(3, dtype=torch.long)
    disentangle, entangle = end_terms(features, y, b)
    assert disentangle.item() == pytest.approx(abs(0.5 - 0.5 + 0.5) / 3, abs=1e-6)
    assert entangle.item() == 0.0  # no same-class pair with different bias


def test_end_blind_variant_also_disentangles_same_class_pairs():
    features = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    y, b = torch.tensor([0, 0]), torch.tensor([0, 0])
    assert end_terms(features, y, b)[0].item() == 0.0  # no different-class pair
    blind = end_terms(features, y, b, blind=True)[0]
    assert blind.item() == pytest.approx(1 / math.sqrt(2), abs=1e-6)


# --- IRENE --------------------------------------------------------------------------------


def test_irene_information_is_zero_when_the_head_ignores_the_bias():
    groups = torch.tensor([0, 1, 0, 1, 1, 0])
    logits = torch.tensor([[2.0, -1.0]]).repeat(6, 1)  # the same output for everyone
    assert normalised_mutual_information(logits, groups, 2).item() == pytest.approx(0, abs=1e-6)


def test_irene_information_matches_scikit_learn_on_confident_predictions():
    groups = torch.tensor([0, 1, 2, 0, 1, 2, 0, 0, 1, 2])
    predicted = torch.tensor([0, 1, 2, 0, 2, 2, 1, 0, 1, 0])
    logits = nn.functional.one_hot(predicted, 3).float() * 100.0  # softmax = one-hot
    ours = normalised_mutual_information(logits, groups, 3).item()
    reference = mutual_info_score(groups.numpy(), predicted.numpy()) / math.log(3)
    assert ours == pytest.approx(reference, abs=1e-5)
    perfect = nn.functional.one_hot(groups, 3).float() * 100.0
    assert normalised_mutual_information(perfect, groups, 3).item() == pytest.approx(
        mutual_info_score(groups.numpy(), groups.numpy()) / math.log(3), abs=1e-5
    )


def test_irene_information_of_a_perfect_head_on_balanced_labels_is_one():
    groups = torch.tensor([0, 1, 0, 1])
    logits = nn.functional.one_hot(groups, 2).float() * 100.0
    assert normalised_mutual_information(logits, groups, 2).item() == pytest.approx(1, abs=1e-5)


def test_irene_loss_splits_the_gradient_as_the_reference_two_optimisers(mnist):
    """The head learns only from its bias cross-entropy; the model only from the task loss and
    the information term read through the head (the reference's two backward passes)."""
    torch.manual_seed(0)
    model = build_seed_cnn(10, (1, 28, 28)).eval()  # no dropout: the passes must agree
    head = nn.Linear(50, 2)
    x, y = mnist.train.x[:16], mnist.train.y[:16]
    groups = torch.arange(16) % 2
    irene.irene_loss(model, head, x, y, groups, alpha=0.5, gamma=0.2).backward()
    got_model = [p.grad.clone() for p in model.parameters()]
    got_head = [p.grad.clone() for p in head.parameters()]

    logits, features = forward_with_features(model, x)
    encoder = 0.5 * nn.functional.cross_entropy(logits, y) + 0.2 * (
        normalised_mutual_information(head(features), groups, 2)
    )
    want_model = torch.autograd.grad(encoder, list(model.parameters()))
    head_only = nn.functional.cross_entropy(head(features.detach()), groups)
    want_head = torch.autograd.grad(head_only, list(head.parameters()))
    assert all(torch.allclose(g, w, atol=1e-6) for g, w in zip(got_model, want_model, strict=True))
    assert all(torch.allclose(g, w, atol=1e-7) for g, w in zip(got_head, want_head, strict=True))
    information = torch.autograd.grad(
        normalised_mutual_information(head(features), groups, 2), head.weight
    )[0]
    assert information.abs().sum() > 0  # so the head really is shielded from a live gradient


def test_irene_rejects_a_single_bias_label(train):
    with pytest.raises(ValueError, match="at least two bias labels"):
        fit("irene", dataclasses.replace(train, groups=torch.zeros_like(train.y)))


# --- bottleneck re-weighting --------------------------------------------------------------


def majority_and_outliers() -> tuple[torch.Tensor, torch.Tensor]:
    """Ten samples of class 0: six near e1 (the dominant cluster), four spread over e2, e3."""
    generator = torch.Generator().manual_seed(0)
    e = torch.eye(4)
    majority = e[0] + 0.05 * torch.randn(6, 4, generator=generator).abs()
    outliers = torch.stack([e[1], e[2], e[1] + e[2], e[1] + 0.2 * e[0]])
    return torch.cat([majority, outliers]), torch.zeros(10, dtype=torch.long)


def test_dominant_centroid_sits_on_the_majority_not_on_the_mean():
    z, y = majority_and_outliers()
    clusters = DominantClusters(num_classes=2, momentum=0.9)
    clusters.update(z, y)
    centroid = nn.functional.normalize(clusters.centroids[0], dim=0)
    plain_mean = nn.functional.normalize(nn.functional.normalize(z, dim=1).mean(0), dim=0)
    e1 = torch.eye(4)[0]
    assert centroid @ e1 > 0.99 > plain_mean @ e1  # the trimmed mean ignores the outliers
    assert not clusters.seen[1]


def test_outliers_of_the_dominant_cluster_get_the_larger_weights():
    z, y = majority_and_outliers()
    clusters = DominantClusters(num_classes=2, momentum=0.9)
    clusters.update(z, y)
    relative = clusters.relative_distances(z, y)
    assert relative[6:].min() > 5 * relative[:6].max()
    w = distance_weights(relative, strength=1.0, margin=1.0, max_weight=20.0)
    assert w.mean().item() == pytest.approx(1.0)
    assert w[6:].min() > 5 * w[:6].max()
    # samples of a class never seen yet keep weight 1 before normalisation
    unseen = clusters.relative_distances(z[:2], torch.tensor([1, 1]))
    assert unseen.tolist() == [1.0, 1.0]


def test_centroid_follows_the_majority_with_the_ema_momentum():
    e = torch.eye(3)
    clusters = DominantClusters(num_classes=1, momentum=0.75)
    y = torch.zeros(4, dtype=torch.long)
    clusters.update(e[0].expand(4, 3), y)
    clusters.update(e[1].expand(4, 3), y)
    assert torch.allclose(clusters.centroids[0], torch.tensor([0.75, 0.25, 0.0]))


def test_distance_weights_by_hand():
    score = torch.tensor([0.5, 3.0, 4.0, 100.0])
    w = distance_weights(score, strength=10.0, margin=3.0, max_weight=50.0)
    raw = torch.tensor([1.0, 1.0, 11.0, 50.0])  # 1 + 10 * max(s - 3, 0), capped at 50
    assert torch.allclose(w, raw / raw.mean())


def test_sample_scores_remember_each_sample():
    scores = SampleScores(4, memory=0.9)
    first = scores.update(torch.tensor([10.0, 1.0]), torch.tensor([0, 2]))
    assert first.tolist() == [10.0, 1.0]  # a first visit takes the value itself
    again = scores.update(torch.tensor([0.0, 1.0]), torch.tensor([0, 3]))
    assert torch.allclose(again, torch.tensor([9.0, 1.0]))


def test_bottleneck_reweight_is_plain_erm_during_warm_up(train):
    torch.manual_seed(123)
    model = build_seed_cnn(10, (1, 28, 28))
    erm = train_erm(model, train, seed=0, optimizer="adam", lr=1e-3, epochs=1)
    assert same_weights(erm, fit("bottleneck-reweight", train, warmup_epochs=1))
    assert not same_weights(erm, fit("bottleneck-reweight", train, warmup_epochs=0))


def test_clean_features_are_deterministic_and_keep_the_mode(mnist):
    torch.manual_seed(0)
    model = build_seed_cnn(10, (1, 28, 28)).train()
    a = clean_features(model, mnist.test.x[:8])
    b = clean_features(model, mnist.test.x[:8])
    assert model.training and a.shape == (8, 50) and torch.equal(a, b)  # no dropout noise
