"""Property-based tests (hypothesis): what must hold for every input, not only the ones we picked.

- task generators: shape, dtype, token range, special tokens only where they belong, the repeat
  structure, and the same seed giving the same batch;
- checkpoints: any small config → save → load gives identical tensors and config;
- scores: a perfect induction pattern (each repeated query attends to the token after the
  previous occurrence of its token) scores prefix-matching exactly 1 for any segment length,
  repeat count, BOS or not, varied lengths, and vocabularies small enough to force duplicate
  tokens; every score stays in its documented range (docs/scores.md);
- readers: any bytes or JSON given to the model loader, the metrics reader or the run-config
  reader give a result or the toolkit's own error, never anything else.

Example counts are kept small (the default suite's budget); ``HYPOTHESIS_PROFILE=thorough`` runs
more.
"""

import json
import os
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from induction_toolkit.errors import InductionToolkitError
# imported here, not inside a strategy: a first import may touch the global `random` state,
# which hypothesis (rightly) objects to during generation
from induction_toolkit.models import PRESETS, preset_config
from induction_toolkit.tasks.repeated import RepeatedTokensConfig

settings.register_profile("default-suite", max_examples=20, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "default-suite"))
# building, saving and loading a model is the slow example: fewer of them in the default suite
ROUND_TRIP = settings(PROFILE, max_examples=8) if PROFILE.max_examples <= 20 else PROFILE


# --- task generators ----------------------------------------------------------------------------

@st.composite
def repeated_tokens_configs(draw):
    seq_len = draw(st.integers(1, 12))
    bos = draw(st.sampled_from([None, 0]))
    d_vocab = draw(st.integers(3 + (bos is not None), 40))  # small: duplicates inside a segment
    vary = draw(st.booleans())
    return RepeatedTokensConfig(d_vocab=d_vocab, seq_len=seq_len, repeats=draw(st.integers(2, 5)),
                                bos_token_id=bos,
                                min_seq_len=draw(st.integers(1, seq_len)) if vary else None)


@PROFILE
@given(cfg=repeated_tokens_configs(), batch=st.integers(1, 6), seed=st.integers(0, 2**31 - 1))
def test_repeated_tokens_have_their_shape_range_and_repeat_structure(cfg, batch, seed):
    from induction_toolkit.tasks.repeated import repeated_query_mask, repeated_tokens_with_lengths

    tokens, lengths = repeated_tokens_with_lengths(cfg, batch, seed=seed)
    again, _ = repeated_tokens_with_lengths(cfg, batch, seed=seed)
    assert torch.equal(tokens, again)
    assert tokens.shape == (batch, cfg.total_len) and tokens.dtype == torch.long
    assert ((0 <= tokens) & (tokens < cfg.d_vocab)).all()
    p = cfg.prefix_len
    if cfg.bos_token_id is not None:
        assert (tokens[:, 0] == cfg.bos_token_id).all()
        assert (tokens[:, 1:] != cfg.bos_token_id).all()  # BOS is never content
    mask = repeated_query_mask(cfg, lengths)
    for b in range(batch):
        r = int(lengths[b])
        assert (cfg.min_seq_len or cfg.seq_len) <= r <= cfg.seq_len
        # every scored query repeats the token one segment back; exactly k − 1 copies are scored
        for i in mask[b].nonzero().flatten().tolist():
            assert tokens[b, i] == tokens[b, i - r]
        assert int(mask[b].sum()) == r * (cfg.repeats - 1)
        segment = tokens[b, p + (cfg.seq_len - r) * cfg.repeats:][:r]
        if r <= cfg.d_vocab - p:  # a segment of distinct tokens whenever the vocabulary allows
            assert len(set(segment.tolist())) == r


@PROFILE
@given(kind=st.sampled_from(["repeated", "copying"]), seq_len=st.integers(12, 64),
       d_vocab=st.integers(4, 64), batch=st.integers(1, 5), seed=st.integers(0, 2**31 - 1),
       data=st.data())
def test_training_tasks_sample_in_range_and_are_determined_by_the_seed(kind, seq_len, d_vocab,
                                                                       batch, seed, data):
    from induction_toolkit.tasks.registry import make_task, task_from_dict

    longest = (seq_len - 2) // 2
    lo = data.draw(st.integers(2, longest))
    hi = data.draw(st.integers(lo, longest))
    options = (dict(min_segment=lo, max_segment=hi) if kind == "repeated"
               else dict(min_length=lo, max_length=hi))
    task = make_task(kind, d_vocab=d_vocab, seq_len=seq_len, **options)
    assert task_from_dict(json.loads(json.dumps(task.to_dict()))).to_dict() == task.to_dict()
    a = task.sample(batch, torch.Generator().manual_seed(seed))
    b = task.sample(batch, torch.Generator().manual_seed(seed))
    assert torch.equal(a, b) and a.shape == (batch, seq_len) and a.dtype == torch.long
    assert ((0 <= a) & (a < d_vocab)).all()
    # special tokens only where the task puts them
    assert (a[:, 0] == 0).all() and (a[:, 1:] != 0).all()
    e1, split1 = task.eval_batch(batch, seed)
    e2, split2 = task.eval_batch(batch, seed)
    assert torch.equal(e1, e2) and split1 == split2 and 0 < split1 < e1.shape[1]


# --- checkpoint round trip ------------------------------------------------------------------------

@st.composite
def model_configs(draw):
    preset = draw(st.sampled_from(sorted(PRESETS)))
    n_heads = draw(st.integers(1, 3))
    d_head = draw(st.sampled_from([4, 8]))
    overrides = dict(n_layers=draw(st.integers(1, 2)), n_heads=n_heads, d_head=d_head,
                     d_model=n_heads * d_head, d_vocab=draw(st.integers(4, 40)),
                     n_ctx=draw(st.integers(4, 32)))
    if not PRESETS[preset].get("attn_only", False):
        overrides["d_mlp"] = draw(st.sampled_from([8, 16]))
    if draw(st.booleans()):
        overrides["positional_embedding_type"] = draw(st.sampled_from(["standard", "shortformer"]))
    return preset_config(preset, **overrides)


@ROUND_TRIP
@given(cfg=model_configs(), seed=st.integers(0, 1000), step=st.none() | st.integers(0, 10**6))
def test_any_config_survives_save_and_load_bit_for_bit(cfg, seed, step):
    from induction_toolkit.checkpoints import load_model, save_model
    from induction_toolkit.models import build_model, config_to_dict

    model = build_model(cfg, seed=seed, device="cpu")
    task = {"name": "repeated", "d_vocab": cfg.d_vocab, "note": "ü ✓ \"quoted\""}
    with tempfile.TemporaryDirectory() as tmp:
        path = save_model(model, Path(tmp) / "m.safetensors", task=task, step=step, seed=seed,
                          extra={"train": {"lr": 1e-3}})
        loaded = load_model(path, device="cpu")
    assert config_to_dict(loaded.model.cfg) == config_to_dict(model.cfg)
    assert (loaded.task, loaded.step, loaded.seed, loaded.extra) == (
        task, step, seed, {"train": {"lr": 1e-3}})
    mine, theirs = model.state_dict(), loaded.model.state_dict()
    assert mine.keys() == theirs.keys()
    for k in mine:
        assert mine[k].dtype == theirs[k].dtype and torch.equal(mine[k], theirs[k]), k


# --- scores -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_model():
    from induction_toolkit.models import build_model

    return build_model("attn-only-2l", seed=0, device="cpu")


def _perfect_induction_pattern(cfg, tokens, lengths, n_heads):
    """A[b, h, i, j] = 1 at j = i − R_b + 1 for the repeated queries (the token after the previous
    occurrence of t[i]), else on key 0: built from the repeat structure, not from any score."""
    from induction_toolkit.tasks.repeated import repeated_query_mask

    batch, n = tokens.shape
    pattern = torch.zeros(batch, n_heads, n, n)
    pattern[:, :, :, 0] = 1.0
    mask = repeated_query_mask(cfg, lengths)
    for b in range(batch):
        for i in mask[b].nonzero().flatten().tolist():
            pattern[b, :, i, 0] = 0.0
            pattern[b, :, i, i - int(lengths[b]) + 1] = 1.0
    return pattern


@PROFILE
@given(cfg=repeated_tokens_configs(), batch=st.integers(1, 4), seed=st.integers(0, 10**6))
def test_a_perfect_induction_pattern_scores_prefix_matching_1_and_every_score_is_in_range(
        tiny_model, cfg, batch, seed):
    from induction_toolkit.scores import score_model
    from induction_toolkit.tasks.repeated import repeated_tokens_with_lengths

    model = tiny_model
    if cfg.total_len < 4:  # too short for the ICL score: refused, the toolkit's way
        with pytest.raises(InductionToolkitError, match="too short to score"):
            score_model(model, task=cfg, batch=batch, seed=seed, vary_segment=False)
        return
    tokens, lengths = repeated_tokens_with_lengths(cfg, batch, seed=seed)
    perfect = _perfect_induction_pattern(cfg, tokens, lengths, model.cfg.n_heads)

    def install(pattern, hook):  # layer 1's heads all attend perfectly; layer 0 keeps its own
        return perfect.to(pattern.dtype)

    model.add_hook("blocks.1.attn.hook_pattern", install)
    try:
        s = score_model(model, task=cfg, tokens=tokens, segment_lengths=lengths)
    finally:
        model.reset_hooks()
    assert torch.allclose(s.prefix_matching[1], torch.ones(model.cfg.n_heads), atol=1e-5)
    for name, lo, hi in (("previous_token", 0, 1), ("prefix_matching", 0, 1),
                         ("duplicate_token", 0, 1), ("copying", -1, 1), ("ov_eigen", -1, 1),
                         ("copying_top1", 0, 1)):
        values = getattr(s, name)
        assert torch.isfinite(values).all(), name
        assert (values >= lo - 1e-6).all() and (values <= hi + 1e-6).all(), (name, values)
    # prefix-matching of layer 0 (its own, random, pattern) is far from perfect
    assert (s.prefix_matching[0] < 0.9).all()


# --- readers: anything in, a result or the toolkit's error out ----------------------------------

MAGIC = st.sampled_from([b"", b"PK\x03\x04", b"\x80\x02", b"\x10\x00\x00\x00\x00\x00\x00\x00{"])


@PROFILE
@given(head=MAGIC, body=st.binary(max_size=300))
def test_any_bytes_load_as_a_model_or_fail_with_the_toolkits_error(head, body):
    from induction_toolkit.checkpoints import load_model

    with tempfile.TemporaryDirectory() as tmp:
        for name in ("m.safetensors", "m.pt"):
            path = Path(tmp) / name
            path.write_bytes(head + body)
            try:
                load_model(path, device="cpu")
            except InductionToolkitError:
                pass


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                    | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)


@PROFILE
@given(lines=st.lists(JSON | st.binary(max_size=20), max_size=5))
def test_any_metrics_file_reads_as_rows_or_fails_with_the_toolkits_error(lines):
    from induction_toolkit.run_dir import metrics_path, read_metrics

    with tempfile.TemporaryDirectory() as tmp:
        metrics_path(tmp).write_bytes(b"\n".join(
            line if isinstance(line, bytes) else json.dumps(line).encode() for line in lines))
        try:
            rows = read_metrics(tmp)
        except InductionToolkitError:
            return
    assert all(isinstance(r, dict) and isinstance(r["step"], int) for r in rows)


@PROFILE
@given(edits=st.dictionaries(st.sampled_from(["preset", "task", "steps", "lr", "batch_size",
                                              "seed", "betas", "device", "model_overrides",
                                              "checkpoint_every", "dropout", "embed_init_std",
                                              "unknown"]), JSON, max_size=3),
       drop=st.lists(st.sampled_from(["preset", "lr", "seed", "device"]), max_size=2))
def test_any_stored_train_config_is_a_config_or_the_toolkits_error(edits, drop):
    from induction_toolkit.training import TrainConfig
    from induction_toolkit.training.loop import build_run_model_config

    data = {**TrainConfig(preset="attn-only-1l").to_dict(), **edits}
    for key in drop:
        data.pop(key, None)
    try:
        cfg = TrainConfig.from_dict(json.loads(json.dumps(data)))
        build_run_model_config(cfg)  # what a resume builds next from it
    except InductionToolkitError:
        return
    assert isinstance(cfg.device, str) and isinstance(cfg.model_overrides, dict)
