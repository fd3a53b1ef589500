"""Reddy (2023) Eq. 10: closed-form gradient against autograd, and the slow phase then cliff."""

import math

import numpy as np
import pytest
import torch

from induction_toolkit.reddy.phenomenological import descend, gradient, loss


def _torch_loss(p, n, n_labels):
    xi, alpha, beta1 = p
    y = alpha * torch.exp(beta1) / (torch.exp(beta1) + n)
    ey = torch.exp(y)
    z = (ey - 1) / (ey + 2 * n) * xi
    zp = ey / (ey + 2 * n) * xi
    return torch.log(1 + (n - 1) * torch.exp(-z) + (n_labels - n) * torch.exp(-zp))


@pytest.mark.parametrize("n,n_labels", [(8, 32), (8, 8), (2, 5)])
def test_gradient_matches_autograd(n, n_labels):
    rng = np.random.default_rng(0)
    for p in rng.normal(0, 2, size=(20, 3)):
        t = torch.tensor(p, requires_grad=True)
        value = _torch_loss(t, n, n_labels)
        (g,) = torch.autograd.grad(value, t)
        assert loss(p, n, n_labels) == pytest.approx(value.item(), rel=1e-12)
        np.testing.assert_allclose(gradient(p, n, n_labels), g.numpy(), rtol=1e-9, atol=1e-12)


def test_gradient_at_origin_is_the_papers_closed_form():
    n, n_labels = 8, 32
    g = gradient(np.zeros(3), n, n_labels)
    assert g[0] == pytest.approx(-(n_labels - n) / (n_labels * (2 * n + 1)))
    assert g[1] == 0 and g[2] == 0
    assert loss(np.zeros(3), n, n_labels) == pytest.approx(math.log(n_labels))  # uniform guess


def test_slow_phase_then_cliff_when_more_labels_than_pairs():
    tr = descend(8, 32, lr=0.5, steps=600)
    cliff = tr.cliff_step()
    assert 50 < cliff < 550
    # slow phase: halfway to the cliff the loss has barely moved, but ξ has been learning
    half = cliff // 2
    assert tr.loss[half] > 0.95 * math.log(32)
    assert tr.param("xi")[half] > 5 * abs(tr.param("alpha")[half])
    assert tr.param("xi")[half] > 5 * abs(tr.param("beta1")[half])
    # cliff: within 20 steps of it the loss has lost most of its value; then near zero
    assert tr.loss[cliff + 20] < 0.2 * tr.loss[cliff - 20]
    assert tr.loss[-1] < 0.01
    assert min(tr.params[-1]) > 1  # all three logits learned: ICL by an induction head


def test_equal_labels_and_pairs_make_the_origin_a_saddle():
    stuck = descend(8, 8, lr=0.5, steps=200)
    assert np.all(stuck.params == 0) and stuck.loss[-1] == pytest.approx(math.log(8))
    up = descend(8, 8, start=(0.0, 0.01, 0.0), lr=0.5, steps=6000)
    down = descend(8, 8, start=(0.0, -0.01, 0.0), lr=0.5, steps=6000)
    assert up.param("alpha")[-1] > 1 and down.param("alpha")[-1] < -1  # two different ends
    assert up.loss[-1] < 0.1 * down.loss[-1]
    # and the ICL solution comes later than from the origin with L > N
    assert up.cliff_step() > descend(8, 32, lr=0.5, steps=600).cliff_step()


def test_bad_sizes_are_user_errors():
    from induction_toolkit.errors import ConfigError

    with pytest.raises(ConfigError):
        descend(8, 4)
