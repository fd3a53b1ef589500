"""A saved `induct stages` result reaches `induct dynamics` (JSON and figures); no devinterp needed."""

import json

import numpy as np

from induction_toolkit.dynamics import analyse
from induction_toolkit.run_dir import read_stages, stages_path, write_stages
from induction_toolkit.viz.dynamics_figures import llc_figure, write_dynamics_figures


def _rows():
    steps = np.arange(0, 401, 10)
    s = 1 / (1 + np.exp(-(steps - 200) / 20))
    loss = 4 - 3 * s
    pm = np.stack([np.stack([np.full_like(s, 0.05)] * 2), np.stack([0.05 + 0.85 * s, 0.05 + 0 * s])])
    return [{"step": int(t), "eval_loss": float(l), "loss_first_half": 4.0,
             "loss_repeated_half": float(l), "icl_score": float(-1.5 * c),
             "icl_windows": {"early": [4, 9], "late": [60, 63]},
             "prefix_matching": p.tolist(), "previous_token": np.zeros((2, 2)).tolist()}
            for t, l, c, p in zip(steps, loss, s, pm.transpose(2, 0, 1))]


STAGES = {"llc": [{"step": s, "mean": m, "std": 0.5} for s, m in
                  [(0, 1.0), (50, 3.0), (150, 8.0), (200, 20.0), (250, 15.0), (400, 16.0)]],
          "smoothed": [1.0, 3.0, 8.0, 19.0, 16.0, 16.0], "boundaries": [220, 300],
          "sampler": {"lr": 1e-4, "n_beta": 30.0, "localization": 300.0, "num_chains": 4,
                      "num_draws": 100}, "notes": []}


def test_saved_stages_reach_dynamics_json_and_figures(tmp_path):
    assert read_stages(tmp_path) is None
    write_stages(tmp_path, STAGES)
    assert json.loads(stages_path(tmp_path).read_text())["boundaries"] == [220, 300]
    dyn = analyse(_rows())
    dyn.stages = read_stages(tmp_path)
    assert dyn.to_dict()["stage_boundaries"] == [220, 300]
    fig = llc_figure(dyn)
    lines = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_label() == "LLC stage boundary"]
    assert len(lines) == 1 and lines[0].get_xdata()[0] == 220
    written = write_dynamics_figures(_rows(), dyn, tmp_path / "figures")
    assert (tmp_path / "figures" / "llc_stages.png") in written
    dyn.stages = None
    assert "stage_boundaries" not in dyn.to_dict()
    assert not any(p.name == "llc_stages.png"
                   for p in write_dynamics_figures(_rows(), dyn, tmp_path / "f2"))
