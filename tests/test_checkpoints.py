"""Every accepted format loads to the same model; every bad file is refused without running it."""

import json
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from induction_toolkit.checkpoints import infer_config, load_model, save_model
from induction_toolkit.errors import CheckpointError
from induction_toolkit.models import build_model, config_to_dict

TOKENS = torch.randint(0, 24, (2, 12), generator=torch.Generator().manual_seed(0))


def _same_logits(a, b, tokens=TOKENS):
    with torch.no_grad():
        torch.testing.assert_close(a(tokens), b(tokens), atol=1e-6, rtol=0)


def test_toolkit_round_trip_keeps_metadata(tmp_path, planted):
    path = save_model(planted.model, tmp_path / "m.safetensors", task=planted.task_dict(),
                      step=7, seed=3, extra={"note": "hi"})
    loaded = load_model(path, device="cpu")
    assert loaded.source == "toolkit" and loaded.step == 7 and loaded.seed == 3
    assert loaded.task == planted.task_dict() and loaded.extra == {"note": "hi"}
    assert loaded.bos_token_id == planted.bos_token_id
    assert config_to_dict(loaded.model.cfg) == config_to_dict(planted.model.cfg)
    _same_logits(loaded.model, planted.model)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


@pytest.mark.parametrize("preset", ["attn-only-2l", "blog-4l"])
def test_transformerlens_config_and_state_dict(tmp_path, preset):
    model = build_model(preset, seed=1, device="cpu")
    # TransformerLens users write cfg.to_dict(): it holds a torch dtype and numpy scalars
    raw = model.cfg.to_dict()
    assert any(type(v).__module__ == "numpy" for v in raw.values())
    torch.save({"config": raw, "state_dict": model.state_dict()}, tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt", device="cpu")
    assert loaded.source == "torch-config"
    tokens = TOKENS % model.cfg.d_vocab
    _same_logits(loaded.model, model, tokens)


def test_config_object_pickled_directly(tmp_path, planted):
    torch.save({"config": planted.model.cfg, "state_dict": planted.model.state_dict()},
               tmp_path / "m.pt")
    _same_logits(load_model(tmp_path / "m.pt", device="cpu").model, planted.model)


@pytest.mark.parametrize("preset", ["attn-only-2l", "blog-4l"])
@pytest.mark.parametrize("fmt", ["torch", "safetensors"])
def test_bare_state_dict_architecture_is_inferred(tmp_path, preset, fmt):
    model = build_model(preset, seed=2, device="cpu")
    sd = model.state_dict()
    path = tmp_path / f"m.{fmt}"
    if fmt == "torch":
        torch.save(sd, path)
    else:
        save_file({k: v.contiguous() for k, v in sd.items()}, path)
    loaded = load_model(path, device="cpu")
    assert loaded.source == "state-dict"
    cfg, ref = loaded.model.cfg, model.cfg
    for f in ("n_layers", "d_model", "n_heads", "d_head", "d_vocab", "n_ctx", "attn_only",
              "normalization_type"):
        assert getattr(cfg, f) == getattr(ref, f), f
    if not ref.attn_only:
        assert cfg.d_mlp == ref.d_mlp and cfg.act_fn == ref.act_fn == "gelu"
        assert any("activation" in n for n in loaded.notes)
    _same_logits(loaded.model, model, TOKENS % ref.d_vocab)


def test_inference_without_layernorm_and_buffers(planted):
    sd = {k: v for k, v in planted.model.state_dict().items() if not k.endswith(("mask", "IGNORE"))}
    fields, notes = infer_config(sd)
    assert fields["normalization_type"] is None and fields["n_ctx"] == planted.model.cfg.n_ctx
    assert fields["d_head"] == planted.model.cfg.d_head and fields["attn_only"]


def test_config_override_file(tmp_path):
    model = build_model("blog-4l", seed=0, device="cpu")
    with torch.no_grad():
        model = model.to(torch.float32, print_details=False)
    torch.save(model.state_dict(), tmp_path / "m.pt")
    (tmp_path / "cfg.json").write_text(json.dumps({"act_fn": "relu"}))
    loaded = load_model(tmp_path / "m.pt", config=tmp_path / "cfg.json", device="cpu")
    assert loaded.model.cfg.act_fn == "relu" and not loaded.notes


def test_run_directory_picks_latest_or_step(tmp_path, planted):
    for step in (10, 200, 30):
        save_model(planted.model, tmp_path / "run" / "checkpoints" / f"step_{step:07d}.safetensors",
                   step=step)
    assert load_model(tmp_path / "run", device="cpu").step == 200
    assert load_model(tmp_path / "run", step=30, device="cpu").step == 30
    with pytest.raises(CheckpointError, match="no checkpoint at step 31"):
        load_model(tmp_path / "run", step=31)


# --- bad input: one test per case -------------------------------------------------------------

def test_missing_path(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_model(tmp_path / "nope.pt")


def test_empty_file(tmp_path):
    (tmp_path / "e.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_model(tmp_path / "e.pt")


def test_random_bytes(tmp_path):
    (tmp_path / "r.bin").write_bytes(os.urandom(1000))
    with pytest.raises(CheckpointError, match="not a model file"):
        load_model(tmp_path / "r.bin")


@pytest.mark.parametrize("fmt", ["safetensors", "torch"])
def test_truncated_file(tmp_path, planted, fmt):
    path = tmp_path / "m"
    if fmt == "safetensors":
        save_model(planted.model, path)
    else:
        torch.save(planted.model.state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="damaged or truncated"):
        load_model(path)


def test_directory_that_is_not_a_run(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a training run"):
        load_model(tmp_path)


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("legacy", [False, True])
def test_pickle_that_would_run_code(tmp_path, legacy):
    marker = tmp_path / "PWNED"
    exploit = _Exploit()
    exploit.marker = marker
    path = tmp_path / "evil.pt"
    if legacy:
        with open(path, "wb") as fh:
            pickle.dump({"state_dict": exploit}, fh, protocol=2)
    else:
        torch.save({"state_dict": exploit}, path)
    with pytest.raises(CheckpointError):
        load_model(path)
    assert not marker.exists()


def test_list_instead_of_dict(tmp_path):
    torch.save([torch.zeros(3)], tmp_path / "l.pt")
    with pytest.raises(CheckpointError, match="holds a list, not a dict"):
        load_model(tmp_path / "l.pt")


def test_contradictory_shapes(tmp_path):
    sd = build_model("attn-only-2l", seed=0, device="cpu").state_dict()
    sd["blocks.1.attn.W_K"] = torch.zeros(4, 32, 16)  # d_model 32 where everything else says 64
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="contradict"):
        load_model(tmp_path / "bad.pt")


def test_config_that_does_not_fit_the_weights(tmp_path, planted):
    cfg = dict(planted.model.cfg.to_dict())  # to_dict() returns the live __dict__: copy it
    cfg["d_model"] = 10
    torch.save({"config": cfg, "state_dict": planted.model.state_dict()}, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="shape"):
        load_model(tmp_path / "m.pt")
