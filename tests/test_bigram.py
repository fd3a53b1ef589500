"""The bigram reference (induction_toolkit/bigram.py) against brute-force counts and closed forms."""

import math

import pytest
import torch

from induction_toolkit.bigram import BigramPredictor, BigramReference, first_occurrence
from induction_toolkit.errors import ConfigError


def test_counts_and_probabilities_match_a_brute_force_loop():
    g = torch.Generator().manual_seed(0)
    v, alpha = 7, 0.5
    tokens = torch.randint(0, v - 1, (5, 40), generator=g)  # token v-1 never occurs: unseen context
    counts = [[0] * v for _ in range(v)]
    for row in tokens.tolist():
        for a, b in zip(row[:-1], row[1:]):  # pairs never cross rows
            counts[a][b] += 1
    pred = BigramPredictor.fit(tokens, v, alpha)
    assert pred.counts.tolist() == [[float(c) for c in r] for r in counts]
    logp = pred.log_probs()
    targets = [0] * v
    for row in tokens.tolist():
        for b in row[1:]:
            targets[b] += 1
    for a in range(v):
        row = counts[a] if sum(counts[a]) else targets  # unseen context: the unigram
        total = sum(row) + alpha * v
        for b in range(v):
            assert math.isclose(float(logp[a, b]), math.log((row[b] + alpha) / total), rel_tol=1e-12)
    # held-out loss: the mean of −log p over every next token, by hand
    held = torch.randint(0, v, (3, 20), generator=g)
    by_hand = [-float(logp[a, b]) for r in held.tolist() for a, b in zip(r[:-1], r[1:])]
    assert math.isclose(pred.loss(held), sum(by_hand) / len(by_hand), rel_tol=1e-12)


def _markov_chain(p: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    cdf = p.cumsum(-1).tolist()
    out, state = [], 0
    for u in torch.rand(n, generator=g, dtype=torch.float64).tolist():
        state = next(b for b, c in enumerate(cdf[state]) if u < c)
        out.append(state)
    return torch.tensor(out)


def test_held_out_loss_on_a_markov_chain_is_its_entropy_rate():
    # closed form: H = −Σ_a π_a Σ_b P_ab ln P_ab with π the stationary distribution of P
    p = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.5, 0.25, 0.25]], dtype=torch.float64)
    evals, evecs = torch.linalg.eig(p.T)
    pi = evecs[:, torch.argmin((evals - 1).abs())].real
    pi = pi / pi.sum()
    entropy = float(-(pi[:, None] * p * p.log()).sum())
    fit = _markov_chain(p, 30_000, seed=1)[None]
    held = _markov_chain(p, 30_000, seed=2)[None]
    loss = BigramPredictor.fit(fit, 3, alpha=0.0).loss(held)
    # per-token losses are bounded by ln(10); the standard error of the mean is < 0.01 nats
    assert loss == pytest.approx(entropy, abs=0.03)
    # the unigram's loss is the stationary distribution's entropy, 0.17 nats above: the bigram gain
    unigram = float(-(pi * pi.log()).sum())
    assert unigram - entropy > 0.15
    assert BigramPredictor.fit(fit, 3, 0.0).unigram_loss(held) == pytest.approx(unigram, abs=0.03)


def test_in_sample_loss_is_exactly_the_empirical_conditional_entropy():
    tokens = torch.tensor([[0, 1, 0, 1, 1, 2, 0, 0, 1, 2, 2, 0]])
    pairs = list(zip(tokens[0, :-1].tolist(), tokens[0, 1:].tolist()))
    n = len(pairs)
    h = 0.0
    for a in set(x for x, _ in pairs):
        n_a = sum(1 for x, _ in pairs if x == a)
        for b in set(y for x, y in pairs if x == a):
            n_ab = pairs.count((a, b))
            h -= n_ab / n * math.log(n_ab / n_a)
    assert BigramPredictor.fit(tokens, 3, alpha=0.0).loss(tokens) == pytest.approx(h, abs=1e-12)


def test_kl_is_zero_for_the_bigram_itself_and_closed_form_for_a_uniform_model():
    g = torch.Generator().manual_seed(3)
    v = 5
    fit = torch.randint(0, v, (8, 50), generator=g)
    held = torch.randint(0, v, (2, 9), generator=g)
    ref = BigramReference(fit, held, v)
    logp = ref.predictor.log_probs()
    same = logp[held].float()  # the model predicts exactly the bigram table
    assert ref.metrics(same)["kl_to_bigram"] == pytest.approx(0.0, abs=1e-6)
    # a uniform model: KL(p ‖ u) = ln V − H(p) at each position
    m = ref.metrics(torch.zeros(2, 9, v))
    rows = logp[held[:, :-1]]
    expected = float((math.log(v) + (rows.exp() * rows).sum(-1)).mean())
    assert m["kl_to_bigram"] == pytest.approx(expected, abs=1e-6)
    assert m["heldout_loss"] == pytest.approx(math.log(v), abs=1e-6)
    assert m["bigram_loss"] == pytest.approx(ref.predictor.loss(held), abs=1e-6)


def test_first_occurrence_marks_tokens_new_to_their_row():
    tokens = torch.tensor([[3, 1, 3, 2, 1, 4], [0, 0, 0, 1, 0, 1]])
    expected = [[True, True, False, True, False, True], [True, False, False, True, False, False]]
    assert first_occurrence(tokens).tolist() == expected


def test_bad_input_is_a_config_error():
    with pytest.raises(ConfigError):
        BigramPredictor.fit(torch.tensor([[0, 9]]), 5)
    with pytest.raises(ConfigError):
        BigramPredictor.fit(torch.tensor([[0, 1]]), 5, alpha=-1)
    with pytest.raises(ConfigError):
        BigramPredictor.fit(torch.tensor([[0, 1]]), 5000)
