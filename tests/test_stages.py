"""LLC stages: the estimator on a known answer, critical points, the CLI contract."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("devinterp")

from induction_toolkit.stages import (LLCEstimate, SamplerSettings, Stages,  # noqa: E402
                                      critical_points, estimate_llc, log_spaced)


class Quadratic(torch.nn.Module):
    """Loss ½·Σ_{i<k} c·w_i² — exactly quadratic in k directions, flat in the other d − k."""

    def __init__(self, d: int, k: int, c: float):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(d))
        self.k, self.c = k, c

    def per_token(self, model, input_ids):
        loss = 0.5 * self.c * (model.w[: self.k] ** 2).sum()
        return loss.expand(input_ids.shape[0], input_ids.shape[1] - 1)


def _sgld_closed_form(k, c, settings, steps=None):
    """E[nβ·L] under devinterp's SGLD update w ← w − ε/2·(nβ∇L + γ(w − w*)) + √ε·N(0, 1):
    per curved direction a Gaussian AR(1), w_{t+1} = ρ·w_t + √ε·ξ with ρ = 1 − εa/2,
    a = nβc + γ, stationary variance v = ε/(1 − ρ²) = 1/(a(1 − εa/4)). devinterp averages the
    loss over every step from w* (w_0 = 0), where E[w_t²] = v(1 − ρ^{2t}): with ``steps`` the
    closed form includes that start-up deficit."""
    eps, nb, gamma = settings.lr, settings.n_beta, settings.localization
    a = nb * c + gamma
    rho2 = (1 - eps * a / 2) ** 2
    v = eps / (1 - rho2)
    start = 1.0 if steps is None else 1 - (1 - rho2 ** steps) / (steps * (1 - rho2))
    return k * nb * c * v * start / 2


def test_llc_of_a_quadratic_is_half_the_curved_directions():
    """k = 3 curved directions among d = 10: λ = k/2 = 1.5; devinterp's chains, run through
    ``estimate_llc``, agree with the exact expectation of their own discretisation."""
    k, d, c = 3, 10, 1.0
    settings = SamplerSettings(lr=2e-3, n_beta=100.0, localization=1.0, num_chains=2,
                               num_draws=400, batch_size=1, n_sequences=1)
    model = Quadratic(d, k, c)
    est = estimate_llc(model, torch.zeros(1, 2, dtype=torch.long), settings,
                       loss_fn=model.per_token)
    exact = _sgld_closed_form(k, c, settings, steps=settings.num_draws)
    assert abs(_sgld_closed_form(k, c, settings) - k / 2) < 0.1 * k / 2  # near the ε → 0 limit
    assert abs(est.mean - exact) < 0.12 * exact, (est.mean, exact, est.per_chain)
    assert abs(est.mean - k / 2) < 0.15 * k / 2
    assert est.std > 0 and len(est.per_chain) == 2
    assert not torch.any(model.w != 0)  # the model itself is not moved


def test_critical_points_against_hand_computed_crossings():
    steps = np.array([0, 10, 20, 30, 40, 50])
    values = np.array([0.0, 1.0, 3.0, 2.0, 0.0, 1.0])
    # slopes at midpoints 5, 15, 25, 35, 45: +1, +2, −1, −2, +1 → crossings between 15 and 25
    # (2/(2+1) of the way: 21.67) and between 35 and 45 (2/(2+1): 41.67)
    assert critical_points(steps, values) == [22, 42]
    assert critical_points(steps, np.arange(6.0)) == []


def test_log_spaced_keeps_ends_and_thins_the_middle():
    picked = log_spaced(list(range(0, 801, 8)), 10)
    assert picked[0] == 0 and picked[-1] == 800 and len(picked) <= 10
    assert picked == sorted(picked)


def test_stages_json_contract():
    est = LLCEstimate(mean=2.0, std=0.1, per_chain=[1.9, 2.1], init_loss=1.0,
                      trace=np.zeros((2, 4)))
    st = Stages([0, 10, 20], [est] * 3, [2.0] * 3, [10], SamplerSettings(), 1.0, ["n"],
                {"start_step": 5, "end_step": 15})
    d = st.to_dict()
    assert {"llc", "boundaries", "sampler", "notes"} <= set(d)
    assert d["llc"][0]["step"] == 0 and {"step", "mean", "std"} <= set(d["llc"][0])
    assert d["boundaries"] == [10] and d["boundaries_in_phase_change"] == [10]
    assert d["sampler"]["lr"] == SamplerSettings().lr


def test_bad_settings_are_refused(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cli.main", "stages", str(tmp_path), "--json"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error:")
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_stages_on_a_short_run(tmp_path):
    """A 120-step run: λ̂ rises as the loss falls (later checkpoints sit in sharper basins),
    and the JSON carries every checkpoint asked for."""
    run = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "cli.main", "train", "--steps", "120", "--out",
                    str(run), "--quiet", "--log-checkpoints", "4", "--eval-every", "20"],
                   check=True, capture_output=True)
    proc = subprocess.run([sys.executable, "-m", "cli.main", "stages", str(run), "--json",
                           "--draws", "40", "--chains", "2", "--sequences", "32"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    steps = [r["step"] for r in d["llc"]]
    assert steps == sorted(steps) and steps[0] == 0 and steps[-1] == 120
    assert d["llc"][-1]["mean"] > d["llc"][0]["mean"]
    assert all(r["std"] >= 0 for r in d["llc"])
