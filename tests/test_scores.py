"""Scores against closed forms, brute-force loops and TransformerLens' own head detector."""

import pytest
import torch
from transformer_lens.head_detector import (compute_head_attention_similarity_score,
                                            get_duplicate_token_head_detection_pattern,
                                            get_induction_head_detection_pattern,
                                            get_previous_token_head_detection_pattern)
from transformer_lens.utilities import lm_cross_entropy_loss

from induction_toolkit.scores import (duplicate_mask, icl_positions, icl_score, induction_mask,
                                      ov_eigen_scores, per_token_loss, score_model, scoring_task)
from induction_toolkit.tasks import RepeatedTokensConfig, repeated_tokens


def test_planted_heads_rank_first(planted):
    s = score_model(planted.model, bos_token_id=planted.bos_token_id, batch=16)
    (pl, ph), (il, ih) = planted.previous_token_head, planted.induction_head
    assert s.top_heads("previous_token")[0][:2] == (pl, ph)
    assert s.top_heads("prefix_matching")[0][:2] == (il, ih)
    assert s.previous_token[pl, ph] >= 0.9
    assert s.prefix_matching[il, ih] >= 0.8
    assert s.copying[il, ih] > 0.9 and s.ov_eigen[il, ih] > 0.9  # it copies what it attends to
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


def test_copying_score_matches_a_per_head_loop(random_2l):
    model = random_2l
    task, _ = scoring_task(model, seq_len=8, repeats=2)
    tokens = repeated_tokens(task, 3, seed=0)
    s = score_model(model, task=task, tokens=tokens)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    qpos = range(task.seq_len, tokens.shape[1])
    for layer in range(model.cfg.n_layers):
        for head in range(model.cfg.n_heads):
            fracs = []
            W_O, W_U, w = (x.detach() for x in (model.W_O[layer, head], model.W_U, model.ln_final.w))
            for b in range(tokens.shape[0]):
                for i in qpos:
                    j = int(cache["pattern", layer][b, head, i].argmax())
                    out = cache["v", layer][b, j, head] @ W_O
                    out = out - out.mean()  # final LayerNorm centres
                    logits = (out * w) @ W_U
                    pos = (logits - logits.mean()).relu()
                    fracs.append(float(pos[tokens[b, j]] / pos.sum()))
            expected = 2 * sum(fracs) / len(fracs) - 1
            assert abs(float(s.copying[layer, head]) - expected) < 1e-4


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
    assert (early, late) == (6, 62) and score == pytest.approx((62 - 1) - (6 - 1))


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
