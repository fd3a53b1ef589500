"""Reddy (2023) data: Zipf frequencies, exact burstiness, item norms, novel classes, determinism, bad input."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from induction_toolkit.errors import ConfigError
from induction_toolkit.tasks.reddy import ReddyConfig, zipf_probs


def _nearest_class(task, content):
    """Index of the nearest class mean to each item (brute force) and the distance."""
    d = torch.cdist(content.reshape(-1, content.shape[-1]), task.class_means)
    dist, idx = d.min(-1)
    return idx.reshape(content.shape[:-1]), dist.reshape(content.shape[:-1])


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_target_classes_follow_zipf(alpha):
    cfg = ReddyConfig(K=32, L=8, N=4, B=2, p_bursty=0.5, alpha=alpha, D=16, P=9)
    task = cfg.build(0)
    batch = task.sample(8000, torch.Generator().manual_seed(1))
    counts = np.bincount(batch.classes[:, -1].numpy(), minlength=cfg.K)
    f = np.arange(1, cfg.K + 1, dtype=float) ** -alpha  # independent of zipf_probs
    expected = f / f.sum() * counts.sum()
    assert chisquare(counts, expected).pvalue > 1e-3
    # and the test has power: a wrong exponent is rejected
    g = np.arange(1, cfg.K + 1, dtype=float) ** -(alpha + 0.3)
    assert chisquare(counts, g / g.sum() * counts.sum()).pvalue < 1e-6
    np.testing.assert_allclose(zipf_probs(cfg.K, alpha).numpy(), f / f.sum(), rtol=1e-12)


@pytest.mark.parametrize("B", [1, 2, 4])
def test_bursty_sequences_have_exact_burstiness(B):
    cfg = ReddyConfig(K=128, L=32, N=8, B=B, p_bursty=1.0, eps=0.1)
    task = cfg.build(3)
    batch = task.sample(300, torch.Generator().manual_seed(0))
    content = batch.inputs[:, :, cfg.P:]
    items = content[:, 0:2 * cfg.N:2]
    nearest, dist = _nearest_class(task, items)
    assert torch.equal(nearest, batch.classes[:, :-1])  # items sit next to their class mean
    for row in range(len(batch)):
        cls = batch.classes[row]
        target_count = int((cls[:-1] == cls[-1]).sum())
        assert target_count == B
        _, counts = torch.unique(cls[:-1], return_counts=True)
        assert set(counts.tolist()) == {B} and len(counts) == cfg.N // B
        labels = batch.context_labels[row]
        assert torch.equal(labels, task.class_label[cls[:-1]])
        _, lab_counts = torch.unique(labels, return_counts=True)
        assert set(lab_counts.tolist()) == {B}  # each label appears the same number of times
    # label tokens carry the fixed label vectors
    assert torch.allclose(content[:, 1:2 * cfg.N:2], task.label_vectors[batch.context_labels])


def test_iid_sequences_when_B_is_zero():
    cfg = ReddyConfig(K=16, L=8, N=8, B=0, p_bursty=1.0, D=8, P=17)
    batch = cfg.build(0).sample(2000, torch.Generator().manual_seed(0))
    hits = (batch.classes[:, :-1] == batch.classes[:, -1:]).sum(1).float()
    # i.i.d. uniform classes: N/K expected copies of the target's class in the context
    assert hits.mean().item() == pytest.approx(cfg.N / cfg.K, rel=0.1)


def test_item_norms_and_positions():
    cfg = ReddyConfig(eps=0.5)
    task = cfg.build(0)
    batch = task.sample(500, torch.Generator().manual_seed(0))
    norms = batch.inputs[:, 0:-1:2, cfg.P:].norm(dim=-1)
    assert norms.mean().item() == pytest.approx(1.0, abs=0.03)
    assert norms.std().item() < 0.15
    pos = batch.inputs[:, :, :cfg.P]
    assert torch.equal(pos.sum(-1), torch.ones(len(batch), cfg.seq_len))
    idx = pos.argmax(-1)
    assert torch.equal(idx - idx[:, :1], torch.arange(cfg.seq_len).expand_as(idx))
    starts = idx[:, 0]
    assert starts.min() >= 0 and starts.max() <= cfg.P - cfg.seq_len
    assert len(torch.unique(starts)) > 20  # a random window, not always 0..2N


def test_balanced_class_to_label_map_and_fixed_labels():
    cfg = ReddyConfig(K=128, L=32)
    a, b = cfg.build(5), cfg.build(5)
    assert set(torch.bincount(a.class_label, minlength=cfg.L).tolist()) == {cfg.K // cfg.L}
    assert torch.equal(a.label_vectors, b.label_vectors) and torch.equal(a.class_means, b.class_means)
    assert not torch.equal(a.class_means, cfg.build(6).class_means)


def test_novel_classes_never_in_training_or_iw():
    cfg = ReddyConfig(K=64, L=16, N=8, B=2, p_bursty=1.0, p_novel=0.5, eps=0.1)
    task = cfg.build(0)
    batch = task.sample(400, torch.Generator().manual_seed(0))
    items = batch.inputs[:, 0:-1:2, cfg.P:]
    _, dist = _nearest_class(task, items)
    known = batch.classes[:, 0] >= 0
    # the noise moves an item by ε/√(1+ε²)·|η| ≈ 0.1 from its mean; other means are ≈ √2 away
    assert dist[known].max() < 0.3
    assert dist[~known].min() > 0.8
    assert 0.4 < (~known).float().mean() < 0.6
    ic = task.eval_set("ic", 300, seed=1)
    _, dist_ic = _nearest_class(task, ic.inputs[:, 0:-1:2, cfg.P:])
    assert dist_ic.min() > 0.8 and (ic.classes == -1).all()
    iw = task.eval_set("iw", 300, seed=1)
    assert not (iw.classes[:, :-1] == iw.classes[:, -1:]).any()  # target's class not in context


def test_eval_sets_answers():
    cfg = ReddyConfig(K=128, L=32, N=8, B=2)
    task = cfg.build(0)
    ic = task.eval_set("ic", 200, seed=0)
    assert (ic.correct_label_mask.sum(1) == 2).all()
    sw = task.eval_set("swapped", 200, seed=0)
    assert (sw.target != task.class_label[sw.classes[:, -1]]).all()  # the answer is swapped
    assert (sw.correct_label_mask.sum(1) == 2).all()
    with pytest.raises(ConfigError):
        task.eval_set("nope", 3, seed=0)


def test_same_seed_same_batch_and_eval_sets_apart_from_training():
    cfg = ReddyConfig(p_novel=0.3, p_bursty=0.6)
    a = cfg.build(1).sample(64, torch.Generator().manual_seed(9))
    b = cfg.build(1).sample(64, torch.Generator().manual_seed(9))
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.target, b.target)
    c = cfg.build(1).sample(64, torch.Generator().manual_seed(10))
    assert not torch.equal(a.inputs, c.inputs)
    task = cfg.build(1)
    assert torch.equal(task.eval_set("ic", 8, 0).inputs, task.eval_set("ic", 8, 0).inputs)
    assert not torch.equal(task.eval_set("ic", 8, 0).inputs, task.eval_set("ic", 8, 1).inputs)


@pytest.mark.parametrize("kwargs,needle", [
    ({"N": 8, "B": 3}, "multiple of B"), ({"L": 64, "K": 32}, "L ≤ K"),
    ({"N": 40, "P": 65}, r"2N\+1"), ({"p_bursty": 1.5}, "p-bursty"), ({"p_novel": -0.1}, "p-novel"),
    ({"eps": -1.0}, "eps"), ({"alpha": math.nan}, "alpha"), ({"K": 100, "L": 32}, "multiple of L"),
])
def test_bad_parameters_are_config_errors(kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        ReddyConfig(**kwargs)
