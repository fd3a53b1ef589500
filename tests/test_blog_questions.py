"""The blog's open questions pipeline (induction_toolkit/reproduce/blog_questions.py).

Synthetic metrics rows with known onsets check the per-run answers (layer, onset, precursor lead,
bigram distances); a tiny real sweep (20-step runs) checks the pipeline end to end in seconds.
"""

import json

import numpy as np
import pytest

from induction_toolkit.errors import ConfigError
from induction_toolkit.reproduce import blog_questions as bq

N_LAYERS, N_HEADS = 4, 4


def _logistic(t, centre, lo, hi, width=25.0):
    return lo + (hi - lo) / (1 + np.exp(-(t - centre) / width))


def _rows(induction=(2, 1, 400.0), previous=(1, 3, 250.0), steps=1000, every=10):
    """Metrics rows: one head's prefix-matching rises at ``induction``'s step, one head's
    previous-token score at ``previous``'s (None: nothing rises), the loss drops with the former."""
    rng = np.random.default_rng(0)
    rows = []
    for t in range(0, steps + 1, every):
        pm = np.full((N_LAYERS, N_HEADS), 0.05) + rng.normal(0, 0.005, (N_LAYERS, N_HEADS))
        pt = np.full((N_LAYERS, N_HEADS), 0.06) + rng.normal(0, 0.005, (N_LAYERS, N_HEADS))
        dup = np.full((N_LAYERS, N_HEADS), 0.05) + rng.normal(0, 0.005, (N_LAYERS, N_HEADS))
        if induction is not None:
            pm[induction[0], induction[1]] = _logistic(t, induction[2], 0.05, 0.8)
        if previous is not None:
            pt[previous[0], previous[1]] = _logistic(t, previous[2], 0.06, 0.9)
        drop = induction[2] if induction is not None else 1e9
        rep = float(_logistic(t, drop + 20, 4.1, 0.5))
        kl = float(0.4 * np.exp(-t / 60) + 0.02 + (0 if t < drop else 0.5 * (t - drop) / steps))
        rows.append({"step": t, "eval_loss": rep, "loss_first_half": 4.13,
                     "loss_repeated_half": rep, "icl_score": rep - 4.13,
                     "icl_windows": {"early": [5, 8], "late": [55, 60]},
                     "prefix_matching": pm.tolist(), "previous_token": pt.tolist(),
                     "duplicate_token": dup.tolist(), "bigram_loss": 4.10, "unigram_loss": 4.105,
                     "heldout_loss": 4.10 + kl, "kl_to_bigram": kl})
    return rows


def test_run_summary_finds_the_layer_and_onset_of_a_planted_rise():
    s = bq.run_summary(_rows(induction=(2, 1, 400.0)))
    assert s["formed"] and (s["layer"], s["head"]) == (2, 1)
    assert s["onset_step"] == pytest.approx(400, abs=10)
    assert s["induction_layers"] == [2]
    flat = bq.run_summary(_rows(induction=None))
    assert not flat["formed"] and flat["layer"] is None and flat["onset_step"] is None


def test_precursor_lead_and_bigram_distance_before_the_onset():
    p = bq.precursor_summary(_rows(induction=(2, 1, 400.0), previous=(1, 3, 250.0)))
    prev = p["previous_token"]
    assert (prev["layer"], prev["head"]) == (1, 3)
    assert prev["lead_steps"] == pytest.approx(150, abs=15)  # 400 − 250: it comes first
    assert p["duplicate_token"]["onset_step"] is None  # flat: no transition, no lead
    b = p["bigram"]
    assert b["last_before_onset_step"] < 400 <= b["last_before_onset_step"] + 10
    # the planted KL falls as 0.4·e^(−t/60) + 0.02 until the onset: its minimum is just before it
    assert b["kl_min_before_onset"] == pytest.approx(0.02 + 0.4 * np.exp(-b["kl_min_step"] / 60), abs=1e-3)
    assert b["kl_min_step"] == b["last_before_onset_step"]
    late = bq.precursor_summary(_rows(induction=(2, 1, 400.0), previous=(1, 3, 600.0)))
    assert late["previous_token"]["lead_steps"] == pytest.approx(-200, abs=15)


def _summary(formed: bool) -> dict:
    return {"formed": formed, "layer": 1 if formed else None, "head": 0, "onset_step": 400 if formed else None,
            "induction_layers": [1] if formed else [], "max_prefix_matching": 0.6 if formed else 0.1,
            "final_prefix_matching": 0.6, "final_in_context_loss": 1.0, "final_first_half_loss": 4.1,
            "final_step": 1000}


def test_killer_boundary_walks_away_from_the_base_value():
    formed = {0.0: 3, 0.1: 3, 0.3: 1, 0.5: 0}
    runs = {}
    for value, k in formed.items():
        params = () if value == 0.0 else (("dropout", value),)
        for seed in range(3):
            runs[bq.Point(params, seed)] = _summary(seed < k)
    sweep = bq.answer_killers(runs)["sweeps"]["dropout"]
    assert [p["n_formed"] for p in sweep["points"]] == [3, 3, 1, 0]
    assert sweep["boundary"]["above"] == {"last_all_formed": 0.1, "first_none_formed": 0.5}
    assert sweep["boundary"]["below"] == {"last_all_formed": 0.0, "first_none_formed": None}
    lo, hi = sweep["points"][2]["formed_ci95"]
    assert lo < 1 / 3 < hi


def test_unknown_question_or_parameter_is_a_config_error():
    with pytest.raises(ConfigError):
        bq.points_for("why")
    with pytest.raises(ConfigError):
        bq.points_for("killers", grid={"temperature": (1.0,)})
    with pytest.raises(ConfigError):
        bq.points_for("layer", scale="huge")


def test_killer_sweeps_train_each_base_run_once():
    sweeps = dict(bq.sweeps_for("killers", seeds=(0, 1), grid={"dropout": (0.0, 0.5), "lr": (3e-3,)}))
    # the base value of each parameter is the killers-base sweep; lr has no other value: no sweep
    assert sweeps == {"base": {"seed": [0, 1]}, "killers-dropout": {"dropout": [0.5], "seed": [0, 1]}}
    assert dict(bq.sweeps_for("layer", seeds=(0, 1, 2))) == {"base": {"seed": [0, 1, 2]}}


@pytest.mark.slow  # ~25 s: trains through the CLI
def test_tiny_sweep_end_to_end(tmp_path):
    # 20 steps: far too short to form a head, so every answer must say so (not a crash, not zeros)
    res = bq.answer("killers", tmp_path, seeds=(0,), grid={"dropout": (0.5,)}, steps=20)
    sweep = res["sweeps"]["dropout"]
    assert [p["value"] for p in sweep["points"]] == [0.0, 0.5]
    assert all(p["n_formed"] == 0 for p in sweep["points"])
    assert (tmp_path / "quick" / "killers.png").stat().st_size > 1000
    assert json.loads((tmp_path / "quick" / "killers.json").read_text())["question"] == "killers"
    assert (tmp_path / "quick" / "killers-dropout" / "sweep.json").is_file()  # through run_sweep
    layer = bq.answer("layer", tmp_path, seeds=(0,), steps=20, figures=False)  # base/seed-0 reused
    assert layer["wall_s"] < res["wall_s"]
    assert layer["n_formed"] == 0 and layer["same_layer"] is None
    pre = bq.answer("precursors", tmp_path, seeds=(0,), steps=20)
    seed = pre["seeds"][0]
    assert seed["induction_onset_step"] is None
    assert seed["bigram"]["bigram_loss"] > 0 and seed["bigram"]["kl_final"] >= 0
    assert "kl_min_before_onset" not in seed["bigram"]  # no onset, nothing is "before" it
