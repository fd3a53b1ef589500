"""Reddy (2023) science on a tiny run: ICL is learned from bursty data and not from i.i.d. data; the slow
measures (CLA, TLA2) rise before the transition, ILA1 and TILA2 jump at it; ablating the layer-2 head
removes ICL.

Tiny = the paper's data and network with D=16, P=9, N=4, L=16, K=64 and width 32 instead of 128,
SGD lr 0.3 (the paper's 0.01 is the same dynamics 30× slower: lr × steps is what matters here).
"""

import numpy as np
import pytest
import torch

from induction_toolkit.reddy.progress import evaluate, head_scores
from induction_toolkit.reddy.train import reddy_train_config, train_reddy
from induction_toolkit.reproduce.reddy import rise_fraction
from induction_toolkit.tasks.reddy import ReddyConfig

pytestmark = pytest.mark.slow
TINY = dict(K=64, N=4, L=16, D=16, P=9, eps=0.1, alpha=0.0)
STEPS, EVERY = 900, 50


def _train(**data):
    torch.set_num_threads(1)
    cfg = reddy_train_config(ReddyConfig(**{**TINY, **data}), steps=STEPS, eval_every=EVERY, lr=0.3)
    return train_reddy(cfg, eval_n=300, hidden=32)


@pytest.fixture(scope="module")
def bursty():
    # bursty sequences (B=1, p_B=1), 80% of them from novel classes (the paper's figure 3 setting)
    return _train(B=1, p_bursty=1.0, p_novel=0.8)


def test_bursty_run_learns_in_context_and_iid_run_does_not(bursty):
    assert bursty.final()["ic_accuracy"] > 0.8
    assert bursty.final()["swapped_accuracy"] > 0.8
    iid = _train(B=0, p_bursty=1.0, p_novel=0.0)
    assert iid.final()["ic_accuracy"] <= 0.5


def test_slow_measures_rise_before_the_transition_and_fast_ones_jump_at_it(bursty):
    rows = bursty.metrics
    t50 = bursty.transition_step()
    assert t50 is not None and t50 >= 4 * EVERY  # a slow phase first
    before = {k: rise_fraction(rows, k, 0.8 * t50) for k in ("CLA", "TLA2", "ILA1", "TILA2")}
    assert min(before["CLA"], before["TLA2"]) > max(before["ILA1"], before["TILA2"]), before
    steps = np.array([r["step"] for r in rows])
    for k in ("ILA1", "TILA2"):  # the steepest rise sits at the transition
        v = np.array([r[k] for r in rows])
        jump = steps[1:][np.argmax(np.diff(v))]
        assert abs(jump - t50) <= 2 * EVERY, (k, jump, t50)


def test_ablating_the_layer2_head_removes_icl(bursty):
    model, task = bursty.model, bursty.task
    ic, iw = task.eval_set("ic", 500, seed=123), task.eval_set("iw", 500, seed=123)

    def zero(z, hook):
        return torch.zeros_like(z)

    hooks = [("blocks.1.attn.hook_z", zero)]
    base_ic = evaluate(model, ic, measures=False)["accuracy"]
    with model.hooks(fwd_hooks=hooks):
        abl_ic = evaluate(model, ic, measures=False)["accuracy"]
        abl_iw = evaluate(model, iw, measures=False)["accuracy"]
    base_iw = evaluate(model, iw, measures=False)["accuracy"]
    L = TINY["L"]
    assert base_ic > 0.8
    assert abl_ic <= 2 / L  # chance is 1/L
    assert abs(abl_iw - base_iw) < 0.1
    # ablating layer 1 instead also breaks the induction circuit (it feeds layer 2's keys)
    with model.hooks(fwd_hooks=[("blocks.0.attn.hook_z", zero)]):
        assert evaluate(model, ic, measures=False)["accuracy"] < 0.5


def test_head_scores_name_the_previous_token_and_induction_heads(bursty):
    scores = head_scores(bursty.model, bursty.task.eval_set("ic", 300, seed=7))
    assert scores["previous_token_head"] == "L0H0" and scores["induction_head"] == "L1H0"
    layer0, layer1 = scores["heads"]
    assert layer1["induction"] > 0.5 > layer0["induction"]
