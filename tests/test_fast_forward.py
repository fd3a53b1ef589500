"""The fused training forward computes TransformerLens' function: logits, loss, gradients, and
50 training steps, checked against the hooked ``HookedTransformer`` forward itself.

Also: configs it cannot fuse and attached hooks fall back to the hooked forward; bf16 autocast
stays close to fp32 and (slow test) forms the induction head at the same time; the low-memory
scoring path gives the same scores. Speed is measured in benchmarks/, never here.
"""

import json
import os
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from induction_toolkit.fast_forward import (FastForward, fast_forward, fast_loss, fused_logits,
                                            fused_loss, unsupported_reason)
from induction_toolkit.models import build_model, preset_config


def _perturbed(cfg, seed: int):
    """A model whose biases and LayerNorm parameters are all non-trivial (init leaves them 0/1)."""
    model = build_model(cfg, seed=seed, device="cpu")
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith((".b", "b_Q", "b_K", "b_V", "b_O", "b_in", "b_out", "b_U")) or name.endswith(".w"):
                p.add_(0.2 * torch.randn(p.shape, generator=gen))
    return model


def _tokens(model, batch: int, seed: int = 0, n_pos: int | None = None):
    gen = torch.Generator().manual_seed(seed)
    vocab = min(model.cfg.d_vocab, model.cfg.d_vocab_out)  # tokens are also loss targets
    return torch.randint(0, vocab, (batch, n_pos or model.cfg.n_ctx), generator=gen)


SMALL_MLP = {"d_model": 64, "d_head": 16, "d_mlp": 128, "n_ctx": 32}

FUSABLE = [
    ("attn-only-1l", {}),
    ("attn-only-2l", {}),
    ("attn-only-4l", {}),
    ("blog-4l", {}),
    ("blog-4l", {**SMALL_MLP, "normalization_type": "LNPre"}),
    ("blog-4l", {**SMALL_MLP, "normalization_type": None}),
    ("blog-4l", {**SMALL_MLP, "act_fn": "gelu_new"}),
    ("blog-4l", {**SMALL_MLP, "act_fn": "relu"}),
    ("attn-only-2l", {"use_attn_scale": False}),
    ("attn-only-2l", {"d_vocab_out": 40}),
]


@pytest.mark.parametrize("preset,overrides", FUSABLE)
def test_fused_logits_and_loss_equal_the_hooked_forward(preset, overrides):
    model = _perturbed(preset_config(preset, **overrides), seed=3)
    assert unsupported_reason(model) is None
    tokens = _tokens(model, 3, n_pos=model.cfg.n_ctx - 5)  # a prefix of the context, too
    with torch.no_grad():
        want_logits = model(tokens, return_type="logits")
        want_loss = model(tokens, return_type="loss")
        got_logits = fused_logits(model, tokens)
        got_loss = fused_loss(model, tokens)
    assert got_logits.shape == want_logits.shape
    torch.testing.assert_close(got_logits, want_logits, rtol=0, atol=1e-5)
    assert abs(float(got_loss) - float(want_loss)) <= 1e-5


@pytest.mark.parametrize("preset", ["attn-only-2l", "blog-4l"])
def test_gradients_equal_the_hooked_forward(preset):
    model = _perturbed(preset, seed=5)
    tokens = _tokens(model, 4, seed=1)
    model.zero_grad()
    model(tokens, return_type="loss").backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    fused_loss(model, tokens).backward()
    for name, p in model.named_parameters():
        # b_K's true gradient is 0 (a key bias shifts every score of a query equally): compare
        # against the scale of the layer's other gradients rather than relatively.
        scale = max(float(want[name].abs().max()), 1e-3)
        assert float((p.grad - want[name]).abs().max()) <= 2e-5 * scale + 1e-7, name


def _train_losses(loss_fn: str, out=None, **overrides):
    from induction_toolkit.training import TrainConfig, train

    losses = []
    torch.manual_seed(0)  # dropout draws from the global generator
    cfg = TrainConfig(**{**dict(preset="attn-only-2l", steps=50, batch_size=8, eval_every=1000,
                                eval_batch=8, score_batch=4, log_checkpoints=0, device="cpu",
                                loss_fn=loss_fn), **overrides})
    result = train(cfg, out, progress=lambda p: losses.append(p.loss), handle_signals=False)
    return torch.tensor(losses, dtype=torch.float64), result


def test_fifty_training_steps_give_the_same_losses_and_a_normal_checkpoint(tmp_path):
    """Same initial weights, same batches: the fast path's losses track the hooked path's."""
    from induction_toolkit.checkpoints import list_checkpoints, load_model

    hooked, _ = _train_losses("hooked")
    fast, result = _train_losses("fast", tmp_path / "run")
    assert len(hooked) == len(fast) == 50
    assert float(hooked[0] - hooked[-1]) > 0.1  # it trained: the comparison is not of constants
    assert float((hooked - fast).abs().max()) <= 1e-5
    # The checkpoint is the ordinary format: a HookedTransformer that reproduces the run's model.
    loaded = load_model(list_checkpoints(tmp_path / "run")[50])
    assert type(loaded.model).__name__ == "HookedTransformer"
    tokens = _tokens(loaded.model, 2)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(tokens), result.model(tokens), rtol=0, atol=1e-6)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["loss_fn"] == "fast"


def test_training_with_an_mlp_gives_the_same_losses():
    small_blog = dict(preset="blog-4l", task="copying", steps=12, batch_size=4,
                      model_overrides={**SMALL_MLP, "n_ctx": 64})
    hooked, _ = _train_losses("hooked", **small_blog)
    fast, _ = _train_losses("fast", **small_blog)
    assert float((hooked - fast).abs().max()) <= 1e-5


def test_unfusable_configs_fall_back_to_the_hooked_forward_and_say_why():
    rotary = build_model(preset_config("attn-only-2l", positional_embedding_type="rotary",
                                       rotary_dim=16), seed=0, device="cpu")
    rms = build_model(preset_config("blog-4l", normalization_type="RMS"), seed=0, device="cpu")
    for model, why in ((rotary, "rotary"), (rms, "RMS")):
        ff = FastForward(model)
        assert not ff.fused and why in ff.reason
        tokens = _tokens(model, 2)
        with torch.no_grad():
            assert torch.equal(ff.loss(tokens), model(tokens, return_type="loss"))


def test_attached_hooks_are_honoured_not_skipped(random_2l):
    tokens = _tokens(random_2l, 4)

    def zero_head(z, hook):
        z[:, :, 1] = 0.0
        return z

    with torch.no_grad():
        plain = float(fast_loss(random_2l, tokens))
        with random_2l.hooks(fwd_hooks=[("blocks.1.attn.hook_z", zero_head)]):
            want = float(random_2l(tokens, return_type="loss"))
            got = float(fast_loss(random_2l, tokens))
    assert abs(plain - want) > 1e-4  # the hook matters …
    assert got == want  # … and the fast path ran the hooked forward to honour it


def test_dropout_runs_are_unchanged_by_the_fast_path():
    hooked, _ = _train_losses("hooked", steps=10, dropout=0.1)
    fast, _ = _train_losses("fast", steps=10, dropout=0.1)
    assert float((hooked - fast).abs().max()) <= 1e-5


def test_bf16_autocast_stays_close_to_fp32_and_keeps_fp32_weights():
    model = _perturbed("blog-4l", seed=7)
    tokens = _tokens(model, 2, n_pos=32)
    fp32 = fast_forward(model)
    bf16 = fast_forward(model, bf16=True)
    model.zero_grad()
    loss32 = fp32.loss(tokens)
    loss32.backward()
    loss32 = loss32.detach()
    g32 = torch.cat([p.grad.flatten() for p in model.parameters()])
    model.zero_grad()
    loss16 = bf16.loss(tokens)
    loss16.backward()
    loss16 = loss16.detach()
    g16 = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert loss16.dtype == torch.float32
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in model.parameters())
    assert 0 < abs(float(loss16) - float(loss32)) < 0.02 * float(loss32)  # bf16 really ran
    assert float(torch.nn.functional.cosine_similarity(g16, g32, dim=0)) > 0.98


@pytest.mark.slow
def test_bf16_training_forms_the_induction_head_within_ten_percent_of_fp32():
    from induction_toolkit.dynamics import analyse

    onset = {}
    for name in ("fast", "fast-bf16"):
        _, result = _train_losses(name, steps=500, batch_size=32, eval_every=10, eval_batch=32,
                                  score_batch=16)
        final_pm = max(max(r) for r in result.metrics[-1]["prefix_matching"][1:])
        assert final_pm > 0.5, (name, final_pm)  # an induction head formed at all
        onset[name] = analyse(result.metrics).induction_onset_step
    assert abs(onset["fast-bf16"] - onset["fast"]) <= 0.1 * onset["fast"], onset


@pytest.mark.slow
def test_compiled_fused_loss_equals_the_hooked_forward():
    """torch.compile's tracer and the runtime shape checker do not compose (dynamo traces into
    beartype's wrapper, whose error path then desynchronises), so the compiled path is checked for
    numerics in a pytest process without the import hook."""
    if os.environ.get("INDUCT_COMPILED_TEST_INNER") != "1":
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
             f"{__file__}::test_compiled_fused_loss_equals_the_hooked_forward"],
            env={**os.environ, "INDUCT_COMPILED_TEST_INNER": "1"}, capture_output=True,
            text=True, timeout=900)
        assert proc.returncode == 0 and " passed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
        return
    model = _perturbed("attn-only-2l", seed=9)
    tokens = _tokens(model, 4)
    ff = fast_forward(model, compile=True)
    model.zero_grad()
    got = ff.loss(tokens)
    got.backward()
    g = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    want = model(tokens, return_type="loss")
    want.backward()
    assert abs(float(got.detach()) - float(want.detach())) <= 1e-5
    for name, p in model.named_parameters():
        assert float((g[name] - p.grad).abs().max()) <= 2e-5 * max(float(p.grad.abs().max()), 1e-3)


# --- CLI ------------------------------------------------------------------------------------

def _invoke(*args):
    from cli.main import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_induct_train_defaults_to_the_fast_path_and_hooked_opts_out(tmp_path):
    for flags, want in (([], "fast"), (["--hooked"], "hooked"), (["--bf16"], "fast-bf16")):
        run = tmp_path / want
        r = _invoke("train", "--preset", "attn-only-1l", "--steps", 2, "--batch-size", 2,
                    "--eval-every", 2, "--out", run, "--quiet", "--device", "cpu", *flags)
        assert r.exit_code == 0, r.output
        assert json.loads((run / "config.json").read_text())["train"]["loss_fn"] == want
    r = _invoke("train", "--steps", 2, "--out", tmp_path / "x", "--hooked", "--bf16")
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "error:" in r.output


def test_low_memory_scoring_gives_the_same_scores(tmp_path):
    import induction_toolkit.scores as scores
    from induction_toolkit.checkpoints import save_model

    model = build_model(preset_config("attn-only-2l", d_vocab=300, d_vocab_out=300), seed=2,
                        device="cpu")
    normal = scores.score_model(model, batch=5, seed=1)
    old = scores._LOW_MEMORY_LOGITS
    scores._LOW_MEMORY_LOGITS = 300 * 7  # several blocks of positions per sequence
    try:
        low = scores.score_model(model, batch=5, seed=1, low_memory=True)
    finally:
        scores._LOW_MEMORY_LOGITS = old
    for kind in scores.HEAD_KINDS:
        torch.testing.assert_close(low.kind(kind), normal.kind(kind), rtol=0, atol=1e-6)
    assert abs(low.icl_score - normal.icl_score) < 1e-5
    path = tmp_path / "m.safetensors"
    save_model(model, path)
    r = _invoke("score", path, "--json", "--batch", 5, "--low-memory")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["data"]["chunk"] == 1


# --- pieces the exact-patching engine reuses ----------------------------------------------

@pytest.mark.parametrize("preset,overrides", [("attn-only-4l", {}), ("blog-4l", SMALL_MLP)])
def test_partial_forwards_equal_transformer_lens_start_at_layer(preset, overrides):
    from induction_toolkit.fast_forward import fused_suffix_logits, resid_after_z

    model = _perturbed(preset_config(preset, **overrides), seed=11)
    tokens = _tokens(model, 3, seed=2)
    L = model.cfg.n_layers
    with torch.no_grad():
        want_logits, cache = model.run_with_cache(tokens)
        resid_pre = {l: cache[f"blocks.{l}.hook_resid_pre"] for l in range(L)}
        for layer in range(L):
            from_layer = model(resid_pre[layer], start_at_layer=layer)
            torch.testing.assert_close(from_layer, want_logits, rtol=0, atol=1e-5)
            # one block from its input and its heads' z, as TL computes it
            got = resid_after_z(model, layer, resid_pre[layer], cache[f"blocks.{layer}.attn.hook_z"])
            if layer + 1 < L:
                want = cache[f"blocks.{layer + 1}.hook_resid_pre"]
            else:
                got, want = model.unembed(model.ln_final(got)), want_logits
            torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
        # a suffix recomputed from position p on equals the full run's logits there
        for layer, p in ((0, 0), (1, 7), (L - 1, model.cfg.n_ctx - 3)):
            suffix = fused_suffix_logits(model, resid_pre[layer][:, p:].repeat(2, 1, 1), layer,
                                         resid_pre, p)
            torch.testing.assert_close(suffix, want_logits[:, p:].repeat(2, 1, 1), rtol=0, atol=1e-5)
