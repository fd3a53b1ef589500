"""Training dynamics on series whose answer is known, and the measurements they are computed from:
the ICL score on held-out training samples over windows, the in-context loss without the second
copy's first token, the lag as a difference of fitted onsets beside its null."""

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cli.main import app
from induction_toolkit.dynamics import analyse, blog_form_r2, fit_logistic
from induction_toolkit.models import build_model
from induction_toolkit.scores import score_model, scoring_task
from induction_toolkit.tasks import RepeatedTaskConfig
from induction_toolkit.training import TrainConfig
from induction_toolkit.training.evaluate import Evaluator, icl_windows

runner = CliRunner()


def _sigmoid(t, centre, width):
    return 1 / (1 + np.exp(-(t - centre) / width))


# --- measurements -----------------------------------------------------------------------------

def test_icl_windows_are_olssons_positions_plus_minus_five_percent():
    # 512 tokens: 50 ± 25.6 and 500 ± 25.6, the late one clipped to the last token with a loss
    assert icl_windows(512) == ((25, 75), (475, 511))
    # 64 tokens: centres 6.25 and 62.5, ± 3.2
    assert icl_windows(64) == ((4, 9), (60, 63))


def _brute_force_losses(model, tokens):
    """loss[b][i] = −log p(token i+1 | tokens ≤ i), one position at a time."""
    logits = model(tokens, return_type="logits").double()
    out = torch.zeros(tokens.shape[0], tokens.shape[1] - 1, dtype=torch.float64)
    for b in range(tokens.shape[0]):
        for i in range(tokens.shape[1] - 1):
            out[b, i] = -torch.log_softmax(logits[b, i], -1)[tokens[b, i + 1]]
    return out


def _period(row):
    for r in range(1, len(row)):
        if torch.equal(row[r:], row[:-r]):
            return r
    return len(row)


def test_icl_score_is_measured_on_held_out_training_samples_over_windows():
    task = RepeatedTaskConfig(d_vocab=32, seq_len=32, min_segment=4, max_segment=15)
    model = _tiny_model(32, 32)
    ev = Evaluator(model, task, eval_batch=16, score_batch=8)
    row = ev(model)
    assert "score_icl" not in row  # one ICL score per row
    held = ev.icl_tokens
    # samples of the training distribution: BOS, then one segment repeated, segment length drawn
    # per sequence (so several lengths in one batch), not the scoring batch's fixed repeats
    periods = {_period(r[1:]) for r in held}
    assert (held[:, 0] == task.bos_token_id).all() and len(periods) >= 4
    assert all(task.min_segment <= p <= task.max_segment for p in periods)
    scoring, _ = scoring_task(model, bos_token_id=0, exclude=(0,))
    (e_lo, e_hi), (l_lo, l_hi) = row["icl_windows"]["early"], row["icl_windows"]["late"]
    assert (e_lo, e_hi, l_lo, l_hi) == (2, 4, 30, 31)  # 32 tokens: 3.125 ± 1.6, 31.25 ± 1.6
    loss = _brute_force_losses(model, held)
    late = np.mean([loss[b, t - 1].item() for b in range(len(held)) for t in range(l_lo, l_hi + 1)])
    early = np.mean([loss[b, t - 1].item() for b in range(len(held)) for t in range(e_lo, e_hi + 1)])
    assert row["icl_score"] == pytest.approx(late - early, abs=1e-5)
    # and it is not the scoring sequences' ICL score
    assert abs(row["icl_score"] - score_model(model, task=scoring, batch=8, seed=4321).icl_score) > 1e-4


def _tiny_model(d_vocab, n_ctx):
    from induction_toolkit.models import preset_config

    cfg = preset_config("attn-only-1l", d_vocab=d_vocab, n_ctx=n_ctx)
    return build_model(cfg, seed=0, device="cpu").eval()


def test_in_context_loss_leaves_out_the_second_copys_first_token(planted):
    model = planted.model
    task = RepeatedTaskConfig(d_vocab=model.cfg.d_vocab, seq_len=model.cfg.n_ctx, min_segment=4,
                              max_segment=20, bos_token_id=None)
    ev = Evaluator(model, task, eval_batch=8, score_batch=8)
    row = ev(model)
    tokens, split = task.eval_batch(8, 1234)
    assert torch.equal(ev.tokens, tokens) and split == 20  # s s, s of 20 tokens, no BOS
    loss = _brute_force_losses(model, tokens)
    # targets split+1 .. end: column i is the loss on token i + 1
    kept = [loss[b, t - 1].item() for b in range(8) for t in range(split + 1, tokens.shape[1])]
    first = loss[:, split - 1].mean().item()
    assert row["loss_repeated_half"] == pytest.approx(np.mean(kept), abs=1e-5)
    # a perfect induction circuit predicts every kept token and cannot predict the first one
    assert row["loss_repeated_half"] < 0.2 and first > 1.0


# --- the one training distribution ----------------------------------------------------------------

@pytest.mark.parametrize("offset_fraction", [0.0, 0.5])
def test_repeated_task_draws_the_same_distribution_at_every_step(offset_fraction):
    task = RepeatedTaskConfig(offset_fraction=offset_fraction)
    for step in (400, 10_000):
        a = task.sample(16, torch.Generator().manual_seed(5), step=0)
        b = task.sample(16, torch.Generator().manual_seed(5), step=step)
        assert torch.equal(a, b)


def test_evaluation_is_dense_by_default():
    assert TrainConfig().eval_every <= 10


# --- the lag, on closed-form series -------------------------------------------------------------

def _rows(steps, loss, pm, icl=None, prev=None):
    """Metrics rows as the evaluator writes them; ``pm`` is ``[T, layer, head]``."""
    icl = -1.5 * (1 - loss / loss.max()) if icl is None else icl
    prev = np.zeros_like(pm) if prev is None else prev
    return [{"step": int(s), "eval_loss": float(l), "loss_first_half": 4.0,
             "loss_repeated_half": float(l), "icl_score": float(c),
             "icl_windows": {"early": [4, 9], "late": [60, 63]},
             "prefix_matching": p.tolist(), "previous_token": q.tolist()}
            for s, l, c, p, q in zip(steps, loss, icl, pm, prev)]


def _known_lag_run(seed=0, noise=0.02):
    """Score centred at 420, loss at 380: τ = +40 (the score lags the loss)."""
    rng = np.random.default_rng(seed)
    steps = np.arange(0, 801, 10, dtype=float)
    loss = 4.0 - 3.0 * _sigmoid(steps, 380, 30) + rng.normal(0, 2 * noise, len(steps))
    ind = 0.05 + 0.85 * _sigmoid(steps, 420, 25) + rng.normal(0, noise, len(steps))
    drifting = 0.02 + 0.0001 * steps + rng.normal(0, noise, len(steps))  # never an induction head
    noisy = 0.1 + rng.normal(0, noise, len(steps))
    constant = np.full(len(steps), 0.05)
    pm = np.stack([np.stack([drifting, noisy]), np.stack([ind, constant])]).transpose(2, 0, 1)
    return steps, loss, pm


def test_lag_recovers_a_known_offset_within_its_interval():
    steps, loss, pm = _known_lag_run()
    dyn = analyse(_rows(steps, loss, pm))
    d = dyn.to_dict()
    lag = d["lag"]
    assert lag["ci95"][0] <= 40 <= lag["ci95"][1] and abs(lag["steps"] - 40) < 10
    assert lag["ci95"][1] - lag["ci95"][0] < 40
    assert lag["r2_score_fit"] > 0.95 and lag["r2_loss_fit"] > 0.95 and lag["r2"] > 0.9
    assert d["strongest_head"]["label"] == "L1H0" and abs(d["induction_onset_step"] - 420) <= 10
    # the null: the three heads that never reach 0.5 prefix-matching, fitted at the same τ
    nulls = [h for h in d["heads"] if not h["induction_head"]]
    assert [h["label"] for h in nulls] == ["L0H0", "L0H1", "L1H1"] and lag["n_null_heads"] == 2
    expected = [blog_form_r2(steps, loss, pm[:, 0, h], dyn.lag.steps) for h in (0, 1)]
    assert lag["null_r2"] == pytest.approx(max(expected), abs=1e-4)
    assert lag["null_r2"] < lag["r2"]
    for h in nulls:
        assert h["onset_step"] is None and h["lag"]["steps"] is None


def test_lag_sign_follows_which_series_moves_first():
    steps, loss, pm = _known_lag_run()
    loss_late = 4.0 - 3.0 * _sigmoid(steps, 470, 30)  # now the loss lags the score by 50
    lag = analyse(_rows(steps, loss_late, pm)).lag
    assert lag.steps is not None and -60 < lag.steps < -40


def test_blog_form_r2_is_exact_for_a_shifted_copy_and_never_extrapolates():
    steps = np.arange(0, 1001, 10, dtype=float)
    score = _sigmoid(steps, 500, 40)
    loss = 3.0 - 2.0 * _sigmoid(steps, 440, 40)  # ℓ(t) = 3 − 2·s(t + 60)
    assert blog_form_r2(steps, loss, score, 60.0) == pytest.approx(1.0, abs=1e-9)
    assert blog_form_r2(steps, loss, score, 0.0) < 0.99
    # rising loss with rising score: the constrained fit (b ≥ 0) explains nothing
    assert blog_form_r2(steps, 1 + score, score, 0.0) == 0.0
    # a shift that leaves fewer than 5 observed points is not fitted
    assert blog_form_r2(steps, loss, score, 970.0) is None


def test_pure_noise_has_no_onset_and_no_lag():
    rng = np.random.default_rng(3)
    steps = np.arange(0, 801, 10, dtype=float)
    loss = 3.0 + rng.normal(0, 0.05, len(steps))
    pm = (0.6 + rng.normal(0, 0.05, (len(steps), 1, 2))).clip(0, 1)  # "induction-level" noise
    dyn = analyse(_rows(steps, loss, pm, icl=rng.normal(0, 0.05, len(steps))))
    d = dyn.to_dict()
    assert all(h["onset_step"] is None for h in d["heads"])
    assert d["induction_onset_step"] is None
    assert d["lag"]["steps"] is None and d["lag"]["ci95"] is None and d["lag"]["r2"] is None
    assert any("no induction onset" in n for n in d["notes"])


def test_constant_head_has_no_onset_and_a_loss_that_never_falls_has_no_drop():
    steps = np.arange(0, 301, 10, dtype=float)
    pm = np.full((len(steps), 1, 1), 0.7)
    loss = np.full(len(steps), 3.0)
    d = analyse(_rows(steps, loss, pm, icl=np.zeros(len(steps)))).to_dict()
    assert d["heads"][0]["onset_step"] is None and d["induction_onset_step"] is None
    assert d["loss_drop_step"] is None
    assert d["phase_change"] == {"start_step": None, "end_step": None, "steepest_step": None}
    assert fit_logistic(steps, pm[:, 0, 0], rising=True) is None


def test_old_runs_fall_back_to_their_task_icl_score_with_a_note():
    steps, loss, pm = _known_lag_run()
    rows = _rows(steps, loss, pm)
    for r, s in zip(rows, steps):
        del r["icl_windows"]
        r["icl_score"] = -1.0 * float(_sigmoid(s, 600, 20))  # the task's eval batch
        r["score_icl"] = -1.0 * float(_sigmoid(s, 200, 20))  # the scoring sequences
    d = analyse(rows).to_dict()
    assert abs(d["phase_change"]["steepest_step"] - 600) <= 10
    assert "old run" in d["icl_score_source"]
    assert any("score_icl" in n for n in d["notes"])
    assert any("first token" in n for n in d["notes"])


# --- the command line -------------------------------------------------------------------------

def _write_run(path, rows):
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"train": TrainConfig().to_dict(),
                                                  "task": {"name": "repeated"}}))
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_cli_dynamics_json_contract_and_table(tmp_path):
    steps, loss, pm = _known_lag_run()
    _write_run(tmp_path / "run", _rows(steps, loss, pm))
    r = runner.invoke(app, ["dynamics", str(tmp_path / "run"), "--json", "--no-figures"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert set(d) >= {"phase_change", "induction_onset_step", "loss_drop_step", "lag",
                      "strongest_head", "heads", "n_evals", "notes", "icl_score_source"}
    lag = d["lag"]
    assert set(lag) >= {"steps", "ci95", "r2", "r2_score_fit", "r2_loss_fit", "null_r2", "method"}
    assert isinstance(lag["steps"], float) and len(lag["ci95"]) == 2
    assert "bootstrap" in lag["method"] and "null" in lag["method"]
    assert [h["onset_step"] for h in d["heads"]].count(None) == 3
    assert any("itself repeated tokens" in n for n in d["notes"])
    r = runner.invoke(app, ["dynamics", str(tmp_path / "run"), "--no-figures"])
    assert r.exit_code == 0, r.output
    assert r.output.count("—") >= 3 and "95% CI" in r.output and "null" in r.output
    assert not math.isnan(lag["r2"])
