"""Scores against closed forms, brute-force loops and TransformerLens' own head detector."""

import pytest
import torch
from transformer_lens.head_detector import (compute_head_attention_similarity_score,
                                            get_duplicate_token_head_detection_pattern,
                                            get_induction_head_detection_pattern,
                                            get_previous_token_head_detection_pattern)
from transformer_lens.utilities import lm_cross_entropy_loss

from induction_toolkit.scores import (duplicate_mask, finite, icl_positions, icl_score,
                                      induction_mask, ov_eigen_scores, per_token_loss, rank_heads,
                                      score_model, scoring_task, varied)
from induction_toolkit.tasks import RepeatedTokensConfig, repeated_tokens
from induction_toolkit.tasks.repeated import repeated_query_mask, repeated_tokens_with_lengths


def test_planted_heads_rank_first(planted):
    s = score_model(planted.model, bos_token_id=planted.bos_token_id, batch=16)
    (pl, ph), (il, ih) = planted.previous_token_head, planted.induction_head
    assert s.top_heads("previous_token")[0][:2] == (pl, ph)
    assert s.top_heads("prefix_matching")[0][:2] == (il, ih)
    assert s.previous_token[pl, ph] >= 0.9
    assert s.prefix_matching[il, ih] >= 0.8
    assert s.copying[il, ih] > 0.95 and s.ov_eigen[il, ih] > 0.9  # it copies what it attends to
    assert s.icl_score < -1.0  # it predicts the repeats
    assert s.verdict() == (f"induction heads: L{il}H{ih} ({s.prefix_matching[il, ih]:.2f}); "
                           f"previous-token heads: L{pl}H{ph} ({s.previous_token[pl, ph]:.2f})")


def test_random_model_scores_low_everywhere(random_2l):
    s = score_model(random_2l, batch=16)
    for kind in ("previous_token", "prefix_matching", "duplicate_token", "copying", "ov_eigen"):
        assert s.kind(kind).max() < 0.5, kind
    assert s.induction_heads() == [] and s.previous_token_heads() == []


def test_masks_match_brute_force():
    tokens = torch.tensor([[5, 1, 2, 3, 1, 2, 3, 1, 4, 1]])
    ind, dup = induction_mask(tokens), duplicate_mask(tokens)
    n = tokens.shape[1]
    for i in range(n):
        for j in range(n):
            t = tokens[0]
            assert ind[0, i, j] == (1 <= j <= i and t[j - 1] == t[i])
            assert dup[0, i, j] == (j < i and t[j] == t[i])


def test_induction_mask_equals_offset_diagonal_for_two_repeats():
    """With k = 2 and no repeated token in a segment, the token definition is ARENA's diagonal."""
    cfg = RepeatedTokensConfig(d_vocab=100, seq_len=12, repeats=2)
    tokens = repeated_tokens(cfg, 3, seed=1)
    mask = induction_mask(tokens)[:, 12:, :]
    offset = torch.zeros(12, 24, dtype=torch.bool)
    offset[torch.arange(12), torch.arange(12) + 1] = True  # query 12+i attends to key i+1
    assert (mask == offset).all()


def _tl_scores(pattern, tokens, detector):
    """TransformerLens' "mul" score, one sequence at a time, averaged over the batch."""
    out = torch.zeros(pattern.shape[1])
    for b in range(tokens.shape[0]):
        det = detector(tokens[b:b + 1].cpu())
        for h in range(pattern.shape[1]):
            out[h] += compute_head_attention_similarity_score(
                pattern[b, h].clone(), det, exclude_bos=False, exclude_current_token=False,
                error_measure="mul")
    return out / tokens.shape[0]


@pytest.mark.parametrize("which", ["planted", "random_2l"])
def test_agrees_with_transformerlens_head_detector(which, request):
    fixture = request.getfixturevalue(which)
    model = fixture.model if which == "planted" else fixture
    bos = fixture.bos_token_id if which == "planted" else None
    task, _ = scoring_task(model, seq_len=10, repeats=3, bos_token_id=bos)
    tokens = repeated_tokens(task, 6, seed=3)
    s = score_model(model, task=task, tokens=tokens)
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"))
    n = tokens.shape[1]
    n_query = n - task.prefix_len - task.seq_len  # repeats 2..k
    for layer in range(model.cfg.n_layers):
        pattern = cache["pattern", layer]
        # TL averages over every query row; rows outside repeats 2..k (and row 0 for the
        # previous-token pattern) hold no detection mass, so the scores differ by a known factor.
        tl_prev = _tl_scores(pattern, tokens, get_previous_token_head_detection_pattern)
        tl_ind = _tl_scores(pattern, tokens, get_induction_head_detection_pattern)
        tl_dup = _tl_scores(pattern, tokens, get_duplicate_token_head_detection_pattern)
        torch.testing.assert_close(s.previous_token[layer] * (n - 1) / n, tl_prev, atol=1e-4, rtol=0)
        torch.testing.assert_close(s.prefix_matching[layer] * n_query / n, tl_ind, atol=1e-4, rtol=0)
        torch.testing.assert_close(s.duplicate_token[layer] * n_query / n, tl_dup, atol=1e-4, rtol=0)


def _brute_rank(logits: list[float], target: int) -> float:
    own = logits[target]
    greater = sum(1 for x in logits if x > own)
    equal = sum(1 for x in logits if x == own)
    return greater + (equal - 1) / 2


def _brute_query_positions(task, lengths, b):
    """Repeats 2..k of sequence ``b``: after BOS, the front padding and one copy."""
    R, k = int(lengths[b]), task.repeats
    first = task.prefix_len + (task.seq_len - R) * k + R
    return range(first, task.total_len)


@pytest.mark.parametrize("which", ["planted", "random_2l"])
def test_copying_rank_and_top1_match_a_brute_force_loop(which, request):
    """Rank of the attended token among the head's direct-path logits, via run_with_cache and the
    final LayerNorm's own cached scale, one (sequence, query, head) at a time."""
    fixture = request.getfixturevalue(which)
    model = fixture.model if which == "planted" else fixture
    bos = fixture.bos_token_id if which == "planted" else None
    task, _ = scoring_task(model, seq_len=8, repeats=3, bos_token_id=bos)
    task = varied(task)
    tokens, lengths = repeated_tokens_with_lengths(task, 4, seed=2)
    assert len(set(lengths.tolist())) > 1
    s = score_model(model, task=task, tokens=tokens, segment_lengths=lengths)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    V = model.cfg.d_vocab_out
    has_ln = model.cfg.normalization_type == "LN"
    for layer in range(model.cfg.n_layers):
        for head in range(model.cfg.n_heads):
            W_O, W_U = model.W_O[layer, head].detach(), model.W_U.detach()
            scores, top1 = [], []
            for b in range(tokens.shape[0]):
                for i in _brute_query_positions(task, lengths, b):
                    j = int(cache["pattern", layer][b, head, i].argmax())
                    out = cache["z", layer][b, i, head] @ W_O
                    if has_ln:  # what ln_final does to this head's share of the residual
                        out = (out - out.mean()) / cache["ln_final.hook_scale"][b, i] * model.ln_final.w
                    logits = (out @ W_U).tolist()
                    if max(logits) == min(logits):
                        continue
                    rank = _brute_rank(logits, int(tokens[b, j]))
                    scores.append(1 - 2 * rank / (V - 1))
                    top1.append(float(rank == 0))
            if not scores:
                assert s.copying[layer, head].isnan() and s.copying_top1[layer, head].isnan()
                continue
            assert float(s.copying[layer, head]) == pytest.approx(sum(scores) / len(scores), abs=1e-5)
            assert float(s.copying_top1[layer, head]) == pytest.approx(sum(top1) / len(top1), abs=1e-5)


@pytest.mark.parametrize("which", ["planted", "random_2l"])
def test_attention_scores_match_brute_force_loops_with_varied_segments(which, request):
    """Prefix-matching, duplicate, previous-token, its decile profile and its read-weighted value,
    from the cached patterns with per-sequence query positions."""
    fixture = request.getfixturevalue(which)
    model = fixture.model if which == "planted" else fixture
    bos = fixture.bos_token_id if which == "planted" else None
    task = varied(scoring_task(model, seq_len=9, repeats=3, bos_token_id=bos)[0])
    tokens, lengths = repeated_tokens_with_lengths(task, 5, seed=4)
    s = score_model(model, task=task, tokens=tokens, segment_lengths=lengths)
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"))
    n = tokens.shape[1]
    t = tokens.tolist()
    L, H = model.cfg.n_layers, model.cfg.n_heads
    prefix, dup, read = torch.zeros(L, H), torch.zeros(L, H), torch.zeros(L, H, 5, n)
    n_q = 0
    for b in range(5):
        for i in _brute_query_positions(task, lengths, b):
            n_q += 1
            for j in range(i + 1):
                for layer in range(L):
                    a = cache["pattern", layer][b, :, i, j]
                    read[layer, :, b, j] += a
                    if j >= 1 and t[b][j - 1] == t[b][i]:
                        prefix[layer] += a
                    if j < i and t[b][j] == t[b][i]:
                        dup[layer] += a
    torch.testing.assert_close(s.prefix_matching, prefix / n_q, atol=1e-5, rtol=0)
    torch.testing.assert_close(s.duplicate_token, dup / n_q, atol=1e-5, rtol=0)
    sub = torch.stack([cache["pattern", layer].diagonal(-1, -2, -1) for layer in range(L)])  # [L, b, H, n-1]
    sub = sub.permute(0, 2, 1, 3)  # [L, H, b, n-1]: A[i, i-1] for i = 1..n-1
    torch.testing.assert_close(s.previous_token, sub.mean(dim=(2, 3)), atol=1e-5, rtol=0)
    for k in range(10):  # decile k holds positions i with floor(10 i / n) == k... rounded up
        positions = [i for i in range(1, n) if -(-k * n // 10) <= i < -(-(k + 1) * n // 10)]
        got = s.previous_token_profile[..., k]
        if not positions:
            assert got.isnan().all()
        else:
            torch.testing.assert_close(got, sub[..., [i - 1 for i in positions]].mean(dim=(2, 3)),
                                       atol=1e-5, rtol=0)
    readers = [(l, h) for l in range(L) for h in range(H) if prefix[l, h] / n_q >= 0.5]
    if not readers:
        assert s.previous_token_at_read.isnan().all()
        return
    w = sum(read[l, h] for l, h in readers)[:, 1:]
    expected = (sub * w).sum(dim=(2, 3)) / w.sum()
    torch.testing.assert_close(s.previous_token_at_read, expected, atol=1e-5, rtol=0)


def test_planted_copier_scores_near_one_and_really_copies(planted):
    """The planted induction head's output raises the attended token's logit above all others."""
    l, h = planted.induction_head
    s = score_model(planted.model, bos_token_id=planted.bos_token_id, batch=16)
    assert s.copying[l, h] >= 0.95
    assert s.copying_top1[l, h] >= 0.8  # ties from padding tokens that repeat a segment token
    # independent check: the direct-path logits of the head alone, argmax = the attended token
    task, _ = scoring_task(planted.model, seq_len=8, repeats=2, bos_token_id=planted.bos_token_id)
    tokens = repeated_tokens_with_lengths(task, 4, seed=1)[0]
    _, cache = planted.model.run_with_cache(tokens)
    z = cache["z", l][:, task.prefix_len + task.seq_len:, h]  # second copy
    logits = z @ planted.model.W_O[l, h] @ planted.model.W_U
    attended = cache["pattern", l][:, h, task.prefix_len + task.seq_len:].argmax(-1)
    assert (logits.argmax(-1) == tokens.gather(1, attended)).all()


def test_random_model_copying_is_near_chance(random_2l):
    s = score_model(random_2l, batch=16)
    assert s.copying.abs().max() <= 0.15
    assert s.copying_top1.max() <= 0.1  # chance 1/64


def test_gpt2_sized_vocabulary_copying_does_not_collapse():
    """With V = 50257 the retired ReLU-share score sat at 2/V − 1 ≈ −1 for every head."""
    from transformer_lens import HookedTransformerConfig

    from induction_toolkit.models import build_model

    cfg = HookedTransformerConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, n_ctx=40,
                                  d_vocab=50257, attn_only=True, normalization_type="LN",
                                  act_fn=None)
    model = build_model(cfg, seed=0, device="cpu")
    s = score_model(model, batch=4)
    assert any("copying estimated on" in n for n in s.notes)  # rows are sampled and it says so
    assert ((s.copying >= -1) & (s.copying <= 1)).all()
    assert (s.copying > -0.5).all(), s.copying


def test_head_with_no_output_is_missing_not_zero():
    from rich.console import Console

    from induction_toolkit.models import build_model

    model = build_model("attn-only-2l", seed=1, device="cpu")
    with torch.no_grad():
        model.blocks[1].attn.W_O[3].zero_()
    s = score_model(model, batch=4)
    assert s.copying[1, 3].isnan() and s.ov_eigen[1, 3].isnan() and s.copying_top1[1, 3].isnan()
    row = next(r for r in s.to_dict()["heads"] if r["label"] == "L1H3")
    assert row["copying"] is None and row["ov_eigen"] is None and row["copying_top1"] is None
    assert row["prefix_matching"] is not None  # its attention is still there
    assert any("L1H3" in n and "copying" in n for n in s.notes)
    assert any("L1H3" in n and "ov_eigen" in n for n in s.notes)
    for kind in ("copying", "ov_eigen", "copying_top1"):
        assert (1, 3) not in [(l, h) for l, h, _ in s.top_heads(kind)]
        assert len(s.top_heads(kind)) == model.cfg.n_layers * model.cfg.n_heads - 1
    console = Console(width=200, record=True)
    console.print(s.to_table())
    line = next(x for x in console.export_text().splitlines() if "L1H3" in x)
    assert line.count("—") == 4  # copying, top-1, OV eigen, and prev@read (no induction head)


def test_rank_heads_skips_missing_values():
    values = torch.tensor([[0.2, float("nan")], [-0.5, float("inf")]])
    assert rank_heads(values) == [(0, 0, pytest.approx(0.2)), (1, 0, -0.5)]
    assert finite(float("nan")) is None and finite(-0.0) == 0.0


def test_positional_head_does_not_pass_for_an_induction_head(planted):
    """A layer-0 head attending to i − (R − 1) by position, no previous-token head."""
    from induction_toolkit.planted import planted_positional_model

    n_ctx = 128
    probe = planted_positional_model(period=25, n_ctx=n_ctx)
    task, _ = scoring_task(probe.model, bos_token_id=probe.bos_token_id)
    positional = planted_positional_model(period=task.seq_len, n_ctx=n_ctx)
    l, h = positional.positional_head
    fixed = score_model(positional.model, task=task, batch=32, vary_segment=False)
    assert fixed.prefix_matching[l, h] >= 0.9  # the shortcut a fixed R rewards
    s = score_model(positional.model, task=task, batch=32)
    assert s.prefix_matching[l, h] < 0.3
    assert s.induction_heads() == []
    il, ih = planted.induction_head
    p = score_model(planted.model, bos_token_id=planted.bos_token_id, batch=32)
    assert p.prefix_matching[il, ih] >= 0.9


def test_segment_lengths_vary_and_are_reported(random_2l):
    s = score_model(random_2l, batch=32, seed=3)
    R = s.data["seq_len"]
    lengths = s.data["segment_lengths"]
    assert len(lengths) == 32 and len(set(lengths)) > 3
    assert all(-(-R // 2) <= x <= R for x in lengths)
    assert s.data["segment_length_range"] == [min(lengths), max(lengths)]
    assert s.data["n_query_positions"] == sum((s.data["repeats"] - 1) * x for x in lengths)


def test_varied_repeated_tokens_structure():
    cfg = RepeatedTokensConfig(d_vocab=30, seq_len=7, repeats=3, bos_token_id=29, exclude=(0,),
                               min_seq_len=4)
    tokens, lengths = repeated_tokens_with_lengths(cfg, 50, seed=0)
    assert tokens.shape == (50, cfg.total_len) and (tokens[:, 0] == 29).all()
    assert not ((tokens[:, 1:] == 29) | (tokens[:, 1:] == 0)).any()
    assert set(lengths.tolist()) == set(range(4, 8))
    mask = repeated_query_mask(cfg, lengths)
    for b in range(50):
        R = int(lengths[b])
        pad = (7 - R) * 3
        body = tokens[b, 1 + pad:].tolist()
        seg = body[:R]
        assert len(set(seg)) == R and body == seg * 3
        assert mask[b].tolist() == [i >= 1 + pad + R for i in range(cfg.total_len)]
    assert torch.equal(tokens, repeated_tokens_with_lengths(cfg, 50, seed=0)[0])
    fixed = RepeatedTokensConfig(d_vocab=30, seq_len=7, repeats=3)
    assert torch.equal(repeated_tokens(fixed, 5, seed=1), repeated_tokens_with_lengths(fixed, 5, seed=1)[0])


def test_trained_copying_agrees_with_ov_eigen(trained_2l):
    s = trained_2l.scores
    induction = s.induction_heads()
    assert induction
    for l, h, _ in induction:
        assert s.copying[l, h] * s.ov_eigen[l, h] > 0, (l, h)
    strongest = max(float(s.copying[l, h]) for l, h, _ in induction)
    assert s.copying[0].max() <= strongest


def test_trained_previous_token_heads_are_named_where_the_induction_head_reads(trained_2l):
    s = trained_2l.scores
    d = s.to_dict()
    assert d["previous_token_heads_by"] == "previous_token_at_read"
    assert any("previous_token_at_read" in n for n in s.notes)
    prev = s.previous_token_heads()
    assert prev and all(l == 0 for l, _, _ in prev)
    row = next(r for r in d["heads"] if (r["layer"], r["head"]) == (prev[0][0], prev[0][1]))
    assert len(row["previous_token_profile"]) == 10
    assert row["previous_token_at_read"] >= 0.5


def test_ov_eigen_matches_full_vocabulary_circuit(random_2l):
    model = random_2l
    scores, _ = ov_eigen_scores(model)
    E = model.W_E.detach().double()
    E = E - E.mean(-1, keepdim=True)
    U = model.ln_final.w.detach().double()[:, None] * model.W_U.detach().double()
    for layer in range(model.cfg.n_layers):
        for head in range(model.cfg.n_heads):
            V = model.blocks[layer].ln1.w.detach().double()[:, None] * model.W_V[layer, head].detach().double()
            O = model.W_O[layer, head].detach().double()
            O = O - O.mean(-1, keepdim=True)
            full = E @ V @ O @ U  # [vocab, vocab]
            eig = torch.linalg.eigvals(full)
            expected = float(eig.sum().real / eig.abs().sum())
            assert abs(float(scores[layer, head]) - expected) < 1e-4


def test_ov_eigen_of_identity_and_negated_circuits(planted):
    scores, _ = ov_eigen_scores(planted.model)
    l, h = planted.induction_head
    assert scores[l, h] == pytest.approx(1.0, abs=1e-5)
    model = planted.model
    with torch.no_grad():
        model.blocks[l].attn.W_O[h] *= -1
    try:
        flipped, _ = ov_eigen_scores(model)
        assert flipped[l, h] == pytest.approx(-1.0, abs=1e-5)
    finally:
        with torch.no_grad():
            model.blocks[l].attn.W_O[h] *= -1


def test_per_token_loss_matches_transformerlens(random_2l):
    tokens = torch.randint(0, 64, (2, 20))
    logits = random_2l(tokens)
    ours = per_token_loss(logits, tokens)
    theirs = lm_cross_entropy_loss(logits, tokens, per_token=True)
    torch.testing.assert_close(ours, theirs)


def test_icl_positions_scale_olssons_indices():
    assert icl_positions(512) == (50, 500)
    assert icl_positions(64) == (6, 62)
    loss = torch.arange(63, dtype=torch.float).repeat(2, 1)  # loss on token i+1 is i
    score, early, late = icl_score(loss)
    # ±5% windows around those centres (science.md): tokens 4..9 and 60..63 of 64; the loss on
    # token t is t - 1 here, so each window's mean is the mean of its t - 1.
    late_mean = sum(t - 1 for t in range(60, 64)) / 4
    early_mean = sum(t - 1 for t in range(4, 10)) / 6
    assert (early, late) == (6, 62) and score == pytest.approx(late_mean - early_mean)


def test_shrinks_to_context_and_says_so(planted):
    task, notes = scoring_task(planted.model, seq_len=25, repeats=4, bos_token_id=0)
    assert task.total_len <= planted.model.cfg.n_ctx and notes
    task, notes = scoring_task(planted.model, seq_len=5, repeats=2)
    assert task.seq_len == 5 and not notes


def test_large_vocabularies_sample_copying_rows(random_2l, monkeypatch):
    """The row cap for big vocabularies estimates the same score and says so in the notes."""
    import induction_toolkit.scores as scores_mod

    task, _ = scoring_task(random_2l, seq_len=12, repeats=3)
    tokens = repeated_tokens(task, 16, seed=5)
    full = score_model(random_2l, task=task, tokens=tokens)
    assert not any("copying estimated" in n for n in full.notes)
    monkeypatch.setattr(scores_mod, "_COPYING_BUDGET", 64 * 40)  # 40 rows of a 64-token vocab
    monkeypatch.setattr(scores_mod, "_COPYING_MIN_ROWS", 1)
    sampled = score_model(random_2l, task=task, tokens=tokens)
    assert any("copying estimated on 40" in n for n in sampled.notes)
    assert (sampled.copying - full.copying).abs().max() < 0.15
    torch.testing.assert_close(sampled.prefix_matching, full.prefix_matching)
