"""Grouped training (issue 17): G runs as one batched model, each member equal to its single run.

Checked against independent computations: the single training loop (``training.train``) with the
member's config, ``build_model`` with the member's seed, and an uninterrupted grouped run for
resume. Speed is measured in benchmarks/ (``--only grouped``), never here.
"""

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from induction_toolkit.errors import ConfigError, NonFiniteLossError
from induction_toolkit.models import build_model
from induction_toolkit.run_dir import list_checkpoints, read_metrics, read_run_config, state_path
from induction_toolkit.training import TrainConfig, train
from induction_toolkit.training.grouped import raise_if_diverged, train_grouped

TINY = dict(preset="attn-only-2l", task="repeated", batch_size=4, eval_every=10 ** 6,
            eval_batch=4, score_batch=4, log_checkpoints=0, device="cpu")


def _single_losses(cfg: TrainConfig, out=None) -> list[float]:
    losses: list[float] = []
    train(cfg, out, progress=lambda p: losses.append(p.loss), handle_signals=False)
    return losses


def _grouped_losses(configs, out_dirs=None, **kw):
    losses: list[list[float | None]] = []
    results = train_grouped(configs, out_dirs, progress=lambda p: losses.append(p.losses),
                            handle_signals=False, **kw)
    return [[row[g] for row in losses] for g in range(len(configs))], results


@pytest.mark.slow
def test_members_start_from_their_seeds_weights_and_keep_their_own_hyperparameters(tmp_path):
    common = dict(TINY, steps=200, checkpoint_every=100)
    configs = [TrainConfig(**common, seed=0, lr=3e-3, weight_decay=0.01),
               TrainConfig(**common, seed=7, lr=1e-3, weight_decay=0.1, warmup=20,
                           betas=(0.8, 0.95))]
    dirs = [tmp_path / "m0", tmp_path / "m1"]
    grouped, results = _grouped_losses(configs, dirs)
    for g, cfg in enumerate(configs):
        # initial weights: the checkpoint at step 0 is build_model with the member's seed
        start = load_file(list_checkpoints(dirs[g])[0])
        want = build_model("attn-only-2l", seed=cfg.seed, device="cpu").state_dict()
        assert all(torch.equal(start[k], want[k]) for k in start)
        single = _single_losses(cfg)
        assert len(single) == len(grouped[g]) == 200
        assert max(abs(a - b) for a, b in zip(single, grouped[g])) <= 1e-4
        assert single[0] - min(single[-20:]) > 0.3  # it trained: not a comparison of constants
        assert read_run_config(dirs[g])["train"] == cfg.to_dict()
        assert results[g].diverged is None and results[g].run_dir == dirs[g]
    # different hyper-parameters gave different trajectories (the members are not copies)
    assert abs(grouped[0][100] - grouped[1][100]) > 1e-3


def test_dropout_masks_come_from_each_members_own_stream():
    configs = [TrainConfig(**TINY, steps=25, seed=3, dropout=0.2),
               TrainConfig(**TINY, steps=25, seed=4, dropout=0.0)]
    grouped, _ = _grouped_losses(configs)
    for g, cfg in enumerate(configs):
        torch.manual_seed(999)  # the single run seeds its own streams: this must not matter
        single = _single_losses(cfg)
        assert max(abs(a - b) for a, b in zip(single, grouped[g])) <= 1e-4
    without = _single_losses(TrainConfig(**TINY, steps=25, seed=3, dropout=0.0))
    assert max(abs(a - b) for a, b in zip(without, grouped[0])) > 1e-3  # dropout did something


def _snapshot(run_dir):
    ckpts = {s: load_file(p) for s, p in list_checkpoints(run_dir).items()}
    rows = [{k: v for k, v in r.items() if k != "elapsed_s"} for r in read_metrics(run_dir)]
    state = torch.load(state_path(run_dir), weights_only=True)
    return ckpts, rows, state


def test_resume_continues_every_member_bit_for_bit_even_from_different_steps(tmp_path):
    common = dict(TINY, eval_every=5, checkpoint_every=10, dropout=0.1)
    full = [TrainConfig(**common, steps=30, seed=s) for s in (0, 1)]
    train_grouped(full, [tmp_path / "a0", tmp_path / "a1"], progress=False, handle_signals=False)
    # interrupted: member 0 got to step 20, member 1 only to 10 (as if killed while saving)
    cut = [TrainConfig(**common, steps=20, seed=0), TrainConfig(**common, steps=10, seed=1)]
    dirs = [tmp_path / "b0", tmp_path / "b1"]
    train_grouped(cut, dirs, progress=False, handle_signals=False)
    results = train_grouped(full, dirs, resume=True, progress=False, handle_signals=False)
    assert [r.resumed_from for r in results] == [20, 10]
    for g in (0, 1):
        (ck_a, rows_a, st_a), (ck_b, rows_b, st_b) = (_snapshot(tmp_path / f"a{g}"),
                                                      _snapshot(dirs[g]))
        assert ck_a.keys() == ck_b.keys() and 30 in ck_a
        for step in ck_a:
            assert all(torch.equal(ck_a[step][k], ck_b[step][k]) for k in ck_a[step]), step
        assert rows_a == rows_b
        for key in ("exp_avg", "exp_avg_sq"):
            for i, s in st_a["optimizer"]["state"].items():
                assert torch.equal(s[key], st_b["optimizer"]["state"][i][key])
        assert torch.equal(st_a["rng"]["torch"], st_b["rng"]["torch"])


def test_a_members_run_directory_is_a_single_run_that_train_can_resume(tmp_path):
    cfg = TrainConfig(**TINY, steps=12, seed=5, checkpoint_every=6)
    train_grouped([cfg, TrainConfig(**TINY, steps=12, seed=6, checkpoint_every=6)],
                  [tmp_path / "g0", tmp_path / "g1"], progress=False, handle_signals=False)
    train(cfg, tmp_path / "s", handle_signals=False)
    # the resume state has a single run's layout: same optimizer groups, state entries, streams
    grouped = torch.load(state_path(tmp_path / "g0"), weights_only=True)
    single = torch.load(state_path(tmp_path / "s"), weights_only=True)
    assert grouped["optimizer"]["param_groups"] == single["optimizer"]["param_groups"]
    for i, s in single["optimizer"]["state"].items():
        got = grouped["optimizer"]["state"][i]
        assert got.keys() == s.keys() and float(got["step"]) == float(s["step"]) == 12
        assert got["step"].dtype == s["step"].dtype and got["exp_avg"].shape == s["exp_avg"].shape
    assert torch.equal(grouped["rng"]["task"], single["rng"]["task"])
    assert torch.equal(grouped["rng"]["torch"], single["rng"]["torch"])
    assert grouped["counters"].keys() == single["counters"].keys()
    # and the single loop continues it like its own run
    longer = TrainConfig(**{**TINY, "steps": 18, "seed": 5, "checkpoint_every": 6})
    out = train(longer, tmp_path / "g0", resume=True, handle_signals=False)
    ref = train(longer, tmp_path / "s", resume=True, handle_signals=False)
    assert out.resumed_from == ref.resumed_from == 12
    assert [r["step"] for r in out.metrics] == [r["step"] for r in ref.metrics] == [0, 12, 18]
    assert abs(out.metrics[-1]["eval_loss"] - ref.metrics[-1]["eval_loss"]) < 1e-4


def test_a_diverging_member_stops_and_is_reported_while_the_others_go_on(tmp_path):
    configs = [TrainConfig(**TINY, steps=15, seed=0, lr=1e6, checkpoint_every=5),
               TrainConfig(**TINY, steps=15, seed=1, checkpoint_every=5)]
    dirs = [tmp_path / "bad", tmp_path / "good"]
    grouped, results = _grouped_losses(configs, dirs)
    bad, good = results
    # initial weights: the checkpoint at step 0 is build_model with the member's seed
    start = load_file(list_checkpoints(dirs[1])[0])
    want = build_model("attn-only-2l", seed=1, device="cpu").state_dict()
    assert all(torch.equal(start[k], want[k]) for k in start)
    other = build_model("attn-only-2l", seed=0, device="cpu").state_dict()
    assert not torch.equal(start["embed.W_E"], other["embed.W_E"])
    assert bad.diverged is not None and "non-finite" in bad.diverged
    assert max(list_checkpoints(dirs[0])) < 15 and max(list_checkpoints(dirs[1])) == 15
    assert good.diverged is None
    single = _single_losses(configs[1])
    assert max(abs(a - b) for a, b in zip(single, grouped[1])) <= 1e-4
    with pytest.raises(NonFiniteLossError, match="1 of 2"):
        raise_if_diverged(results)
    # a single run of the diverging config stops at the same step
    with pytest.raises(NonFiniteLossError) as err:
        train(configs[0], None, handle_signals=False)
    assert err.value.args[0].split(";")[0] == bad.diverged.split(";")[0]


@pytest.mark.parametrize("change", [dict(batch_size=8), dict(preset="attn-only-1l"),
                                    dict(task="copying"), dict(loss_fn="hooked")])
def test_runs_that_differ_in_shape_or_forward_are_refused_before_anything_is_written(tmp_path,
                                                                                    change):
    configs = [TrainConfig(**TINY, steps=5, seed=0), TrainConfig(**{**TINY, "steps": 5, **change})]
    if change.get("loss_fn"):
        configs = [TrainConfig(**{**TINY, "steps": 5, **change, "seed": s}) for s in (0, 1)]
    with pytest.raises(ConfigError):
        train_grouped(configs, [tmp_path / "a", tmp_path / "b"], progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_induct_train_seeds_writes_one_ordinary_run_per_seed(tmp_path):
    from cli.main import app

    out = tmp_path / "g"
    res = CliRunner().invoke(app, ["train", "--steps", "6", "--batch-size", "4", "--seeds", "0,2",
                                   "--eval-every", "3", "--quiet", "--device", "cpu",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    for seed in (0, 2):
        cfg = read_run_config(out / f"seed_{seed}")["train"]
        assert cfg["seed"] == seed and cfg["steps"] == 6
        assert [r["step"] for r in read_metrics(out / f"seed_{seed}")] == [0, 3, 6]
    # resuming finished runs: nothing left to train, the stored configs are kept
    res = CliRunner().invoke(app, ["train", "--seeds", "0,2", "--quiet", "--resume", str(out)])
    assert res.exit_code == 0, res.output
    assert f"{out / 'seed_2'}: 6 steps" in res.output.replace("\n", "")
    assert read_metrics(out / "seed_2")[-1]["step"] == 6
    bad = CliRunner().invoke(app, ["train", "--seeds", "3-1", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "seeds" in bad.output


@pytest.mark.slow
def test_a_grouped_members_induction_onset_matches_its_single_run(trained_2l, tmp_path):
    """The member with the shared trained run's config forms its induction head at the same step
    (within one evaluation interval), next to a second seed."""
    from conftest import TRAINED_2L_CONFIG

    from induction_toolkit.dynamics import run_dynamics

    configs = [TrainConfig(**{**TRAINED_2L_CONFIG, "seed": s}) for s in (0, 1)]
    dirs = [tmp_path / "s0", tmp_path / "s1"]
    with torch.random.fork_rng(devices=[]):
        train_grouped(configs, dirs, progress=False, handle_signals=False)
    single = run_dynamics(trained_2l.run_dir).induction_onset_step
    member = run_dynamics(dirs[0]).induction_onset_step
    assert single is not None and member is not None
    assert abs(single - member) <= TRAINED_2L_CONFIG["eval_every"]
    assert run_dynamics(dirs[1]).induction_onset_step is not None  # the other seed formed one too
