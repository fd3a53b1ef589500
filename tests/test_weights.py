"""Weight views: block view, sub-diagonal score, virtual K-composition, composition scores, figures.

Known answers come from the hand-planted circuit; numbers are cross-checked against
TransformerLens (``all_composition_scores``, the hooked attention scores) and closed forms.
"""

import contextlib
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli.main import app
from induction_toolkit.checkpoints import save_model
from induction_toolkit.models import build_model, preset_config
from induction_toolkit.scores import ov_eigen_scores
from induction_toolkit.weights import (analyze_weights, composition_scores, diagonal_score,
                                       folded_copy, random_baseline, subdiagonal_score)
from induction_toolkit.weights.circuits import ROTARY_NOTE, token_sample
from induction_toolkit.weights.figures import figure_png, head_figure, layer_figure, weights_html

runner = CliRunner()


@pytest.fixture(scope="module")
def planted_analysis(planted):
    return analyze_weights(planted.model)


@pytest.fixture(scope="module")
def ln_model():
    return build_model("attn-only-2l", seed=1, device="cpu")


# --- the scores on hand-made blocks (closed forms) ---------------------------------------------

def _brute_row_z(block, i, j, keys):
    """z-value of ``block[i, j]`` among ``block[i, k]`` for ``k`` in ``keys``, by plain loops."""
    row = [float(block[i, k]) for k in keys]
    mean = sum(row) / len(row)
    std = math.sqrt(sum((x - mean) ** 2 for x in row) / len(row))
    return 0.0 if std == 0 else (float(block[i, j]) - mean) / std


def test_subdiagonal_score_closed_form_and_orientation():
    n = 5
    block = torch.zeros(n, n)
    block[torch.arange(1, n), torch.arange(n - 1)] = 1.0  # rows = queries: key = query − 1
    # row i (≥ 2) holds one 1 among i + 1 causal keys: z = (1 − p)/√(p(1 − p)) = √i with p = 1/(i+1)
    assert subdiagonal_score(block) == pytest.approx(np.mean([math.sqrt(i) for i in range(2, n)]))
    # the transpose puts the mass above the diagonal, which causal attention never reads
    assert subdiagonal_score(block.T) == 0.0
    assert subdiagonal_score(torch.full((n, n), 3.7)) == 0.0
    # fewer than three positions: no row has three keys, so there is no score (not 0)
    assert subdiagonal_score(torch.zeros(2, 2)) is None
    # a self-attending (diagonal) block counts against the score: row i scores −1/√i
    assert subdiagonal_score(torch.eye(n)) == pytest.approx(np.mean([-1 / math.sqrt(i) for i in range(2, n)]))


def test_subdiagonal_score_ignores_a_per_row_constant():
    """science.md: adding c·i to row i leaves attention unchanged, so it must leave the score.

    The old global z-score moved a pure sub-diagonal block from +5.8 to −0.5 under this shift.
    """
    n = 64
    block = torch.zeros(n, n)
    block[torch.arange(1, n), torch.arange(n - 1)] = 1.0
    clean = subdiagonal_score(block)
    assert clean > 5.0
    for c in (-3.0, 0.1, 1.0, 10.0):
        shifted = block + c * torch.arange(n, dtype=torch.float32)[:, None]
        assert subdiagonal_score(shifted) == pytest.approx(clean, rel=1e-6)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(3, 12), data=st.data())
def test_row_scores_are_invariant_to_row_constants_and_scales(n, data):
    floats = st.floats(-5, 5, allow_nan=False, width=32)
    block = torch.tensor(data.draw(st.lists(floats, min_size=n * n, max_size=n * n)),
                         dtype=torch.float64).reshape(n, n)
    shift = torch.tensor(data.draw(st.lists(st.floats(-1e3, 1e3), min_size=n, max_size=n)),
                         dtype=torch.float64)[:, None]
    scale = torch.tensor(data.draw(st.lists(st.floats(0.1, 10), min_size=n, max_size=n)),
                         dtype=torch.float64)[:, None]
    # rows that are (nearly) constant are 0 by definition; rounding on a shifted copy of a row whose
    # spread is ~1e-7 of the shift may not be: keep rows with a real spread
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    for i in range(2, n):
        assume(float(block[i, : i + 1].std()) > 1e-2)
    assume(float(block.std(dim=1).min()) > 1e-2)
    for fn in (subdiagonal_score, diagonal_score):
        base = fn(block)
        assert fn(block + shift) == pytest.approx(base, abs=1e-6)
        assert fn(block * scale) == pytest.approx(base, abs=1e-6)
    # a constant above the diagonal is what causal attention never reads
    assert subdiagonal_score(torch.where(causal, block, block + 7.0)) == pytest.approx(
        subdiagonal_score(block), abs=1e-9)


def test_row_scores_match_a_brute_force_loop():
    gen = torch.Generator().manual_seed(0)
    for n, m in ((3, 3), (7, 7), (12, 12), (9, 5), (5, 9)):
        block = torch.randn(n, m, generator=gen, dtype=torch.float64)
        k = min(n, m)
        sub = np.mean([_brute_row_z(block, i, i - 1, range(i + 1)) for i in range(2, k)])
        assert subdiagonal_score(block) == pytest.approx(sub, abs=1e-12)
        diag = np.mean([_brute_row_z(block, i, i, range(m)) for i in range(k)])
        assert diagonal_score(block) == pytest.approx(diag, abs=1e-12)


def test_diagonal_score_closed_form():
    n = 6
    block = 2.0 * torch.eye(n) + 0.5
    # each row: one entry above n − 1 equal ones, z = √(n − 1)
    assert diagonal_score(block) == pytest.approx(math.sqrt(n - 1))
    # a constant added to each row (what a softmax over the row ignores) leaves it unchanged
    assert diagonal_score(block + torch.arange(n)[:, None] * 3.0) == pytest.approx(math.sqrt(n - 1))
    assert diagonal_score(torch.full((n, n), -1.0)) == 0.0
    assert diagonal_score(torch.zeros(4, 2)) is None


# --- the planted circuit: the known answer -----------------------------------------------------

def test_planted_previous_token_head_has_top_subdiagonal(planted, planted_analysis):
    sub = planted_analysis.subdiagonal
    best = divmod(int(sub.argmax()), sub.shape[1])
    assert best == planted.previous_token_head
    assert sub[best] > 3.0
    others = sub.flatten().clone()
    others[sub.shape[1] * best[0] + best[1]] = float("-inf")
    assert sub[best] > 5 * others.max()
    # the induction head's QK reads no positions: its position block is zero, and scores 0
    assert sub[planted.induction_head] == 0.0


def test_planted_top_k_composition_pair_and_virtual_diagonal(planted, planted_analysis):
    top = planted_analysis.composition_pairs("K")[0]
    assert (tuple(top["from"]), tuple(top["to"])) == (planted.previous_token_head, planted.induction_head)
    assert top["score"] > 0.05 and top["score"] == pytest.approx(top["raw"] - planted_analysis.baseline["K"])
    virtual = planted_analysis.virtual_k[planted.induction_head]
    assert tuple(virtual[0]["from"]) == planted.previous_token_head
    assert virtual[0]["diagonal"] > 3.0
    assert all(v["diagonal"] < 1.0 for v in virtual[1:])
    # token matching: query token t attends to the key whose previous token is t
    block = planted_analysis.virtual_k_block(planted.previous_token_head, planted.induction_head)
    assert torch.equal(block.argmax(dim=1), torch.arange(block.shape[0]))


def test_block_view_sums_to_tl_attention_scores(planted, planted_analysis):
    """tt + tp + pt + pp, indexed by the tokens and positions, is layer 0's pre-softmax score."""
    model = planted.model
    tokens = torch.randint(0, model.cfg.d_vocab, (1, 20))
    _, cache = model.run_with_cache(tokens, names_filter="blocks.0.attn.hook_attn_scores")
    scores = cache["blocks.0.attn.hook_attn_scores"][0]  # [head, query, key], -inf above diagonal
    t = tokens[0]
    pos = torch.arange(20)
    causal = torch.ones(20, 20, dtype=torch.bool).tril()
    for head in range(model.cfg.n_heads):
        b = planted_analysis.qk_blocks(0, head)
        total = (b["tt"][t][:, t] + b["tp"][t][:, pos] + b["pt"][pos][:, t] + b["pp"][pos][:, pos])
        torch.testing.assert_close(total[causal].float(), scores[head][causal], atol=1e-4, rtol=1e-4)


def test_planted_ov_eigen_matches_scores_module(planted, planted_analysis):
    expected, _ = ov_eigen_scores(planted.model)
    torch.testing.assert_close(planted_analysis.ov_eigen, expected, equal_nan=True)
    assert planted_analysis.ov_eigen[planted.induction_head] == pytest.approx(1.0, abs=1e-4)


# --- a trained attn-only-2l model (shared session fixture) ---------------------------------------

def test_trained_model_weights_find_the_heads_induct_score_finds(trained_2l):
    result = analyze_weights(trained_2l.model, partners=2, baseline_samples=50)
    prev, ind = trained_2l.previous_token_head, trained_2l.induction_head
    sub = result.subdiagonal
    assert divmod(int(sub.argmax()), sub.shape[1]) == prev
    assert sub[prev] > 1.0
    # A trained 2-layer model often turns every layer-1 head into an induction head, so the top
    # K-composition pair must run from the previous-token head into *an* induction head, and the
    # induction head ranked first by prefix matching must read its keys mostly from that head.
    top = result.composition_pairs("K")[0]
    assert tuple(top["from"]) == prev and top["score"] > 0.03
    assert trained_2l.scores.prefix_matching[tuple(top["to"])] >= 0.5
    virtual = result.virtual_k[ind]
    assert tuple(virtual[0]["from"]) == prev and virtual[0]["diagonal"] > 1.5
    # copying: the induction head's OV circuit has a positive eigenvalue score, as induct score says
    assert result.ov_eigen[ind] > 0.5


# --- composition scores against TransformerLens -----------------------------------------------

@pytest.mark.parametrize("which", ["planted", "ln"])
def test_composition_scores_equal_transformer_lens(planted, ln_model, which):
    model = planted.model if which == "planted" else ln_model
    folded, _ = folded_copy(model)  # with LayerNorm, both read the same folded copy
    for mode in ("Q", "K", "V"):
        ours = composition_scores(folded, mode)
        with _one_thread():  # TL's batched SVDs crawl when two OpenMP threads share busy cores
            theirs = folded.all_composition_scores(mode).detach().double()
        assert ours.shape == theirs.shape
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
        assert ours.max() > 0.05  # not trivially zero


def test_random_baseline_matches_closed_form_and_is_seeded():
    # For rotation-invariant random heads E‖W_OV W‖² ≈ ‖W_OV‖²‖W‖²/d_model, so the score ≈ 1/√d_model.
    for d_model, d_head in ((64, 16), (128, 16), (120, 48)):
        b = random_baseline(d_model, d_head, "K", samples=200, seed=0)
        assert b == pytest.approx(1 / math.sqrt(d_model), rel=0.03)
    assert random_baseline(64, 16, "Q", seed=3) == random_baseline(64, 16, "Q", seed=3)
    assert random_baseline(64, 16, "Q", seed=3) != random_baseline(64, 16, "Q", seed=4)
    with pytest.raises(ValueError):
        random_baseline(64, 16, "X")


def test_layernorm_model_is_folded_on_a_copy(ln_model):
    before = {k: v.clone() for k, v in ln_model.state_dict().items()}
    result = analyze_weights(ln_model, partners=1)
    assert ln_model.cfg.normalization_type == "LN"
    after = ln_model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert any("folded" in n for n in result.notes)
    # scores.ov_eigen_scores folds LayerNorm itself: reading the folded copy must agree with it
    expected, _ = ov_eigen_scores(ln_model)
    torch.testing.assert_close(result.ov_eigen, expected, atol=1e-4, rtol=1e-4)
    _assert_all_finite(result.to_dict())


def test_rotary_model_skips_position_blocks(tmp_path):
    model = build_model(preset_config("attn-only-2l", positional_embedding_type="rotary"), seed=0, device="cpu")
    result = analyze_weights(model, partners=1, baseline_samples=20)
    assert result.subdiagonal is None and result.n_positions is None
    assert ROTARY_NOTE in result.notes
    assert set(result.qk_blocks(1, 0)) == {"tt"}
    assert figure_png(head_figure(result, 1, 0)).startswith(b"\x89PNG")
    save_model(model, tmp_path / "rot.safetensors")
    out = runner.invoke(app, ["weights", str(tmp_path / "rot.safetensors"), "--json", "--baseline-samples", "20"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert ROTARY_NOTE in data["notes"] and data["heads"][0]["subdiagonal"] is None


def test_large_vocab_uses_a_seeded_token_sample():
    ids = token_sample(50257, 64, seed=0)
    assert ids.numel() == 64 and torch.equal(ids, ids.sort().values) and int(ids.max()) < 50257
    assert torch.equal(ids, token_sample(50257, 64, seed=0))
    model = build_model(preset_config("attn-only-1l", d_vocab=1000, d_vocab_out=1000, n_ctx=32), seed=0, device="cpu")
    result = analyze_weights(model, max_tokens=40, max_positions=16, baseline_samples=10)
    assert result.ov_block(0, 0).shape == (40, 40)
    assert result.qk_blocks(0, 0)["pp"].shape == (16, 16)
    assert any("sample of 40 of 1000" in n for n in result.notes)
    assert any("first 16 of 32 positions" in n for n in result.notes)


# --- figures and the command -------------------------------------------------------------------

def test_figures_and_html_are_self_contained(planted_analysis):
    fig = head_figure(planted_analysis, 1, 2)
    assert len(fig.axes) == 4 + 1 + 4  # 2×2 QK blocks, OV, four virtual K blocks
    png = figure_png(layer_figure(planted_analysis, 0))
    assert png.startswith(b"\x89PNG")
    page = weights_html(planted_analysis, {0: png})
    assert page.count("data:image/png;base64,") == 1 and "http" not in page


def test_cli_json_contract_and_files(tmp_path, planted):
    ckpt = tmp_path / "p.safetensors"
    save_model(planted.model, ckpt, task=planted.task_dict())
    out = runner.invoke(app, ["weights", str(ckpt), "--out", str(tmp_path / "w"), "--json", "--partners", "2"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert {"heads", "k_composition", "q_composition", "v_composition"} <= set(data)
    row = data["heads"][0]
    assert {"layer", "head", "subdiagonal", "ov_eigen", "q_partner", "k_partner", "v_partner"} <= set(row)
    assert len(data["heads"]) == 8 and len(data["k_composition"]) == 16
    pair = data["k_composition"][0]
    assert pair["from"] == list(planted.previous_token_head) and pair["to"] == list(planted.induction_head)
    best_sub = max(data["heads"], key=lambda r: r["subdiagonal"])
    assert (best_sub["layer"], best_sub["head"]) == planted.previous_token_head
    _assert_all_finite(data)
    files = sorted(p.name for p in (tmp_path / "w").iterdir())
    assert files == ["layer_0.png", "layer_1.png", "weights.html", "weights.json"]
    page = (tmp_path / "w" / "weights.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "http" not in page
    assert json.loads((tmp_path / "w" / "weights.json").read_text())["heads"] == data["heads"]


def test_cli_table_and_bad_input(tmp_path, planted):
    ckpt = tmp_path / "p.safetensors"
    save_model(planted.model, ckpt)
    out = runner.invoke(app, ["weights", str(ckpt), "--baseline-samples", "20"])
    assert out.exit_code == 0, out.output
    assert "top K-composition: L0H1 → L1H2" in out.stdout and "sub-diag" in out.stdout
    for args in (["weights", str(tmp_path / "missing.pt")],
                 ["weights", str(ckpt), "--max-tokens", "0"],
                 ["weights", str(ckpt), "--out", str(ckpt)]):
        bad = runner.invoke(app, args)
        assert bad.exit_code == 2, bad.output
        lines = bad.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in bad.output


@contextlib.contextmanager
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _assert_all_finite(obj):
    if isinstance(obj, float):
        assert math.isfinite(obj)
    elif isinstance(obj, dict):
        for v in obj.values():
            _assert_all_finite(v)
    elif isinstance(obj, list):
        for v in obj:
            _assert_all_finite(v)
