"""Reddy network and minimal model: TransformerLens hook names, fused forward, progress measures' chance levels."""

import math

import pytest
import torch

from induction_toolkit.reddy.minimal import MinimalInductionModel
from induction_toolkit.reddy.network import ReddyNetwork
from induction_toolkit.reddy.progress import chance_levels, evaluate
from induction_toolkit.tasks.reddy import ReddyConfig

CFG = ReddyConfig(K=32, N=4, L=8, B=1, D=16, P=12)


def _net(seed=0, hidden=32):
    return ReddyNetwork(CFG.d_model, CFG.seq_len, CFG.L, hidden=hidden, seed=seed)


def test_hook_names_are_transformer_lens():
    net = _net()
    batch = CFG.build(0).sample(3, torch.Generator().manual_seed(0))
    logits, cache = net.run_with_cache(batch.inputs)
    assert logits.shape == (3, CFG.L)
    for layer in range(2):
        assert cache[f"blocks.{layer}.attn.hook_pattern"].shape == (3, 1, CFG.seq_len, CFG.seq_len)
        assert cache[f"blocks.{layer}.attn.hook_z"].shape == (3, CFG.seq_len, 1, 32)
        assert cache[f"blocks.{layer}.hook_resid_post"].shape == (3, CFG.seq_len, CFG.d_model)
    # causal: no attention to later tokens
    assert cache["blocks.0.attn.hook_pattern"][0, 0].triu(1).abs().max() == 0


def test_forward_is_the_papers_equations():
    """Eq. 2–3 written out by hand (no scaling, no biases) against the hooked forward."""
    net = _net(seed=3)
    with torch.no_grad():
        for b in net.blocks:
            b.attn.W_Q.mul_(3)  # make attention non-uniform
    u = CFG.build(1).sample(4, torch.Generator().manual_seed(1)).inputs
    x = u
    for b in net.blocks:
        a = b.attn
        s = (x @ a.W_Q[0]) @ (x @ a.W_K[0]).transpose(1, 2)
        s = s.masked_fill(torch.ones(CFG.seq_len, CFG.seq_len, dtype=torch.bool).triu(1), -math.inf)
        x = x + s.softmax(-1) @ x @ (a.W_V[0] @ a.W_O[0])
    want = net.classifier(x[:, -1])
    torch.testing.assert_close(net(u), want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(net.fast_forward(u), want, atol=1e-5, rtol=1e-5)
    hidden = [m for m in net.classifier if isinstance(m, torch.nn.Linear)]
    assert len(hidden) == 4  # three hidden ReLU layers and the read-out


def test_progress_measures_at_uniform_attention_and_prediction():
    net = _net()
    with torch.no_grad():
        for b in net.blocks:
            b.attn.W_Q.zero_()  # every score 0: uniform causal attention
        net.classifier[-1].weight.zero_()  # uniform prediction
    task = CFG.build(0)
    batch = task.eval_set("ic", 50, seed=0)
    m = evaluate(net, batch)
    n = CFG.seq_len
    # brute force: query i attends 1/(i+1) to each key
    assert m["ILA1"] == pytest.approx(sum(1 / (i + 1) for i in range(1, n)) / (n - 1), rel=1e-5)
    assert m["TLA2"] == pytest.approx(CFG.N / n, rel=1e-5)
    assert m["TILA2"] == pytest.approx(1 / n, rel=1e-5)
    assert m["CLA"] == pytest.approx(CFG.N / CFG.L, rel=1e-5)  # N distinct labels when B = 1
    chance = chance_levels(CFG)
    for k in ("ILA1", "TLA2", "TILA2", "CLA"):
        assert m[k] == pytest.approx(chance[k], rel=1e-5)


def test_minimal_model_hooks_and_scalars():
    model = MinimalInductionModel(CFG.D, CFG.L, seed=0)
    batch = CFG.build(0).eval_set("ic", 20, seed=0)
    m = evaluate(model, batch)
    n = CFG.seq_len
    # all scalars start at 0: uniform attention in both layers
    assert m["ILA1"] == pytest.approx(sum(1 / (i + 1) for i in range(1, n)) / (n - 1), rel=1e-5)
    assert m["TLA2"] == pytest.approx(CFG.N / n, rel=1e-5)
    with torch.no_grad():
        model.beta1.fill_(50.0)
        model.alpha.fill_(200.0)
    m = evaluate(model, batch)
    assert m["ILA1"] > 0.99  # β₁ large: every token reads its predecessor
    # α large: the target reads the label after its own class's item; when that item is the
    # first token (no predecessor: its buffer holds itself) the item and its label tie
    _, cache = model.run_with_cache(batch.inputs)
    row = cache["blocks.1.attn.hook_pattern"][:, 0, -1]
    later = ~batch.correct_label_mask[:, 0]
    label_pos = 2 * batch.correct_label_mask.float().argmax(-1) + 1
    assert later.sum() >= 5
    assert (row.argmax(-1)[later] == label_pos[later]).all()
    torch.testing.assert_close(row[~later][:, :2], torch.full((int((~later).sum()), 2), 0.5))
    assert m["TILA2"] == pytest.approx((later.float() + 0.5 * ~later).mean().item(), abs=1e-4)
    fixed = MinimalInductionModel(CFG.D, CFG.L, fix_beta2=True)
    assert not fixed.beta2.requires_grad
    assert all(p is not fixed.beta2 for p in fixed.trainable_parameters())
