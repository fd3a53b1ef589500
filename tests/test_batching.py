"""Scoring batch sizes that fit in memory: estimates, chunk invariance, halving on OOM."""

import pytest
import torch

from induction_toolkit import batching
from induction_toolkit.scores import score_model, scoring_task


def test_auto_chunk_follows_the_budget(random_2l):
    per = batching.bytes_per_sequence(random_2l, 101)
    # logits alone: positions × vocabulary × 4 bytes, so the estimate cannot be below that
    assert per >= 101 * random_2l.cfg.d_vocab * 4
    assert batching.auto_chunk(random_2l, 32, 101, budget=10 * per) == 10
    assert batching.auto_chunk(random_2l, 32, 101, budget=1) == 1
    assert batching.auto_chunk(random_2l, 32, 101, budget=1 << 40) == 32


def test_scores_do_not_depend_on_the_chunk(random_2l):
    task, _ = scoring_task(random_2l, seq_len=10, repeats=3)
    whole = score_model(random_2l, task=task, batch=8, seed=3)
    parts = batching.score_fitting(random_2l, task=task, batch=8, seed=3, chunk=3)
    assert parts.data["chunk"] == 3
    for kind in ("previous_token", "prefix_matching", "duplicate_token", "copying"):
        torch.testing.assert_close(getattr(parts, kind), getattr(whole, kind), atol=1e-5, rtol=0)
    assert abs(parts.icl_score - whole.icl_score) < 1e-5


def test_out_of_memory_halves_the_chunk(random_2l, monkeypatch):
    tried = []
    real = batching.score_model

    def fake(model, *, chunk, **kwargs):
        tried.append(chunk)
        if chunk > 3:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(model, chunk=chunk, **kwargs)

    monkeypatch.setattr(batching, "score_model", fake)
    task, _ = scoring_task(random_2l, seq_len=8, repeats=2)
    result = batching.score_fitting(random_2l, task=task, batch=16, chunk=16)
    assert tried == [16, 8, 4, 2] and result.data["chunk"] == 2


def test_out_of_memory_at_one_sequence_is_a_user_error(random_2l, monkeypatch):
    def fake(model, **kwargs):
        raise torch.OutOfMemoryError("simulated")

    monkeypatch.setattr(batching, "score_model", fake)
    task, _ = scoring_task(random_2l, seq_len=8, repeats=2)
    with pytest.raises(batching.OutOfMemoryError, match="even one sequence"):
        batching.score_fitting(random_2l, task=task, batch=4, chunk=4)
