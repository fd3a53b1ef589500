"""``induct ablate``, ``patch``, ``weights``, ``report`` and ``score`` on a Reddy run directory.

One tiny bursty run per module (the data and network of tests/test_reddy_science.py: D=16, P=9,
N=4, L=16, width 32, SGD lr 0.3; here K=32 with half the sequences novel and 70% bursty, so the
run learns both in context and in weights: IC and IW accuracy ≈ 0.97 after 1200 steps, ~5 s).
"""

import json

import pytest
import torch
from typer.testing import CliRunner

from cli.main import app
from induction_toolkit.reddy.progress import evaluate
from induction_toolkit.reddy.train import load_reddy, reddy_train_config, train_reddy
from induction_toolkit.tasks.reddy import ReddyConfig

runner = CliRunner()
DATA = dict(K=32, N=4, L=16, D=16, P=9, eps=0.1, alpha=0.0, B=1, p_bursty=0.7, p_novel=0.5)
L = DATA["L"]
N_SEQ = 300  # sequences per evaluation set: accuracy steps of 1/300


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def run_json(*args):
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("reddy") / "run"
    cfg = reddy_train_config(ReddyConfig(**DATA), steps=1200, eval_every=400, lr=0.3)
    trained = train_reddy(cfg, out, eval_n=300, hidden=32, checkpoints=1)
    assert trained.final()["ic_accuracy"] > 0.8 and trained.final()["iw_accuracy"] > 0.8
    return out


@pytest.fixture(scope="module")
def ablation(run):
    return run_json("ablate", run, "--batch", N_SEQ)


def test_ablating_the_layer2_head_drops_ic_to_chance_and_leaves_iw(ablation):
    base_ic, base_iw = ablation["baseline_ic_accuracy"], ablation["baseline_iw_accuracy"]
    assert base_ic > 0.8 and base_iw > 0.8
    l1 = next(r for r in ablation["heads"] if r["label"] == "L1H0")
    assert l1["ic_accuracy"] <= 2 / L  # chance is 1/L
    assert abs(l1["iw_accuracy"] - base_iw) <= 0.05
    assert l1["delta_loss"] > 2 and abs(l1["first_half_delta_loss"]) < 0.2  # IC loss vs IW loss
    # the previous-token head feeds the induction head's keys: ablating it hurts IC too
    l0 = next(r for r in ablation["heads"] if r["label"] == "L0H0")
    assert l0["ic_accuracy"] < 0.5
    assert ablation["ranking"][0] == "L1H0"
    # the existing keys are all still there
    for key in ("method", "baseline_loss", "baseline_first_half_loss", "heads", "ranking", "data", "notes"):
        assert key in ablation


def test_ablation_matches_a_manual_forward_with_hook_z_zeroed(run, ablation):
    model, task, _ = load_reddy(run)
    ic = task.eval_set("ic", N_SEQ, seed=0)  # the CLI's seed 0 draws the same set
    iw = task.eval_set("iw", N_SEQ, seed=0)
    zero = [("blocks.1.attn.hook_z", lambda z, hook: torch.zeros_like(z))]
    with model.hooks(fwd_hooks=zero):
        ic_m, iw_m = evaluate(model, ic, measures=False), evaluate(model, iw, measures=False)
    l1 = next(r for r in ablation["heads"] if r["label"] == "L1H0")
    assert l1["ic_accuracy"] == pytest.approx(ic_m["accuracy"], abs=1e-6)
    assert l1["iw_accuracy"] == pytest.approx(iw_m["accuracy"], abs=1e-6)
    assert l1["loss"] == pytest.approx(ic_m["loss"], rel=1e-4)
    assert l1["first_half_loss"] == pytest.approx(iw_m["loss"], rel=1e-4)


def test_patching_the_layer2_head_restores_the_clean_label(run):
    out = run_json("patch", run, "--batch", 100)
    effects = {h["label"]: h["effect"] for h in out["heads"]}
    assert out["clean_metric"] - out["corrupted_metric"] > 2  # the relabelled context misleads it
    assert effects["L1H0"] > 0.8
    assert effects["L0H0"] < 0.3
    assert out["data"]["task"] == "reddy"


def test_patched_metric_matches_a_manual_hooked_patch(run):
    from induction_toolkit.reddy.analysis import causal_inputs

    model, task, _ = load_reddy(run)
    out = run_json("patch", run, "--batch", 40, "--seed", 3)
    inputs = causal_inputs(task, batch=40, seed=3)
    ic = task.eval_set("ic", 40, seed=3)
    _, cache = model.run_with_cache(inputs.clean, names_filter="blocks.1.attn.hook_z")
    put_back = [("blocks.1.attn.hook_z", lambda z, hook: cache["blocks.1.attn.hook_z"])]
    with torch.no_grad(), model.hooks(fwd_hooks=put_back):
        logits = model(inputs.corrupted)
    manual = logits.log_softmax(-1).gather(1, ic.target[:, None]).mean().item()
    patched = next(h["patched_metric"] for h in out["heads"] if h["label"] == "L1H0")
    assert patched == pytest.approx(manual, abs=1e-4)


def test_relabelled_context_keeps_items_and_gives_every_class_another_label():
    task = ReddyConfig(**DATA).build(0)
    ic = task.eval_set("ic", 50, seed=1)
    bad = task.relabeled(ic, seed=2)
    P = DATA["P"]
    assert torch.equal(bad.inputs[:, 0::2], ic.inputs[:, 0::2])  # items and the target untouched
    assert torch.equal(bad.inputs[:, :, :P], ic.inputs[:, :, :P])  # positions untouched
    assert (bad.context_labels != ic.context_labels).all()
    assert (bad.target != ic.target).all()
    for r in range(50):  # the same set of labels, shown with other classes
        assert sorted(bad.context_labels[r].tolist()) == sorted(ic.context_labels[r].tolist())
    assert torch.allclose(bad.inputs[:, 1:-1:2, P:], task.label_vectors[bad.context_labels])


def test_network_starts_at_a_cached_layer_like_a_hooked_transformer():
    from induction_toolkit.reddy.network import ReddyNetwork

    c = ReddyConfig(**DATA)
    net = ReddyNetwork(c.d_model, c.seq_len, c.L, hidden=16, seed=0)
    x = c.build(0).eval_set("ic", 8, seed=0).inputs
    logits, cache = net.run_with_cache(x)
    assert torch.allclose(net(cache["blocks.1.hook_resid_pre"], start_at_layer=1), logits, atol=1e-6)
    assert net(x, return_type=None) is None


def test_path_patching_runs_on_a_reddy_run(run):
    out = run_json("patch", run, "--batch", 50, "--path", "L0H0:L1H0")
    assert {x["input"] for x in out["inputs"]} == {"q", "k", "v"}
    assert out["dominant"] in ("q", "k", "v")


def test_weights_show_a_previous_token_head_in_layer_0(run):
    out = run_json("weights", run, "--baseline-samples", 20)
    heads = {h["label"]: h for h in out["heads"]}
    # per-row z-score of key = query − 1 in the one-hot position block (σ above the row's mean)
    assert heads["L0H0"]["subdiagonal"] > 1.0 > heads["L1H0"]["subdiagonal"]
    assert out["basis"] == {"tokens": {"class": DATA["K"], "label": L}, "positions": DATA["P"]}
    assert any("class means" in n for n in out["notes"])


def test_report_writes_its_sections_and_names_the_omitted_ones(run, tmp_path):
    html_path = tmp_path / "report.html"
    out = run_json("report", run, "--out", html_path)
    assert html_path.stat().st_size > 10_000
    assert {"model", "causal", "weights"} <= set(out["sections"])
    assert {"scores", "attention", "dynamics"} <= set(out["omitted"])
    assert out["path_patching"] == {**out["path_patching"], "sender": "L0H0", "receiver": "L1H0",
                                    "ran": True}
    assert any("L1H0" in n and "induction" in n for n in out["notes"])
    assert "Not in this report" in html_path.read_text()


def test_score_names_the_heads(run):
    out = run_json("score", run, "--batch", 200)
    assert out["previous_token_head"] == "L0H0" and out["induction_head"] == "L1H0"


def test_a_reddy_checkpoint_file_points_to_its_run_directory(run):
    ckpt = sorted((run / "checkpoints").iterdir())[-1]
    for command in ("ablate", "compare"):
        result = invoke(command, ckpt)
        assert result.exit_code == 2 and "run directory" in result.stderr, result.output


@pytest.mark.parametrize("args", [["ablate", "--heads", "L5H0"], ["patch", "--path", "L0H0:L5H0"],
                                  ["ablate", "--device", "cuda"], ["weights", "--n-heads", "2"]])
def test_bad_input_on_a_reddy_run_is_one_line_and_exit_2(run, args):
    result = invoke(args[0], run, *args[1:])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
