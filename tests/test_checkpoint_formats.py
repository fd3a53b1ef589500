"""Checkpoints of other projects: nanoGPT, Hugging Face single files, wrapped TransformerLens saves.

Each format is written the way its project writes it (nanoGPT's ``train.py`` dict layout with a
real AdamW state and the ``torch.compile`` prefix; Hugging Face's ``save_pretrained`` with the
config removed; TransformerLens' ``state_dict``), and each conversion is checked against an
independent forward pass: a nanoGPT reference written here from nanoGPT's published ``model.py``
structure, and the Hugging Face model's own forward. The planted induction circuit is then put
into each layout, and ``induct score`` must find its induction head.
"""

import json
import math

import einops
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from cli.main import app
from induction_toolkit.checkpoints import load_model
from induction_toolkit.errors import CheckpointError

transformers = pytest.importorskip("transformers")
runner = CliRunner()
TOL = 1e-4  # the bound on the converted logits


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


# --- nanoGPT, as its model.py defines it (written here from its structure, not copied) ----------

class RefLayerNorm(nn.Module):
    def __init__(self, d, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class RefAttention(nn.Module):
    def __init__(self, d, n_head, bias):
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(d, 3 * d, bias=bias)  # q, k, v stacked along the output
        self.c_proj = nn.Linear(d, d, bias=bias)

    def forward(self, x):
        B, T, d = x.shape
        q, k, v = self.c_attn(x).split(d, dim=2)
        q, k, v = (t.view(B, T, self.n_head, d // self.n_head).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(k.shape[-1])
        att = att.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        y = att.softmax(-1) @ v
        return self.c_proj(y.transpose(1, 2).reshape(B, T, d))


class RefMLP(nn.Module):
    def __init__(self, d, bias):
        super().__init__()
        self.c_fc = nn.Linear(d, 4 * d, bias=bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * d, d, bias=bias)

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class RefBlock(nn.Module):
    def __init__(self, d, n_head, bias):
        super().__init__()
        self.ln_1, self.attn = RefLayerNorm(d, bias), RefAttention(d, n_head, bias)
        self.ln_2, self.mlp = RefLayerNorm(d, bias), RefMLP(d, bias)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class RefGPT(nn.Module):
    """nanoGPT's GPT: learned positions, pre-LN blocks, final LN, lm_head tied to wte."""

    def __init__(self, n_layer, n_head, n_embd, block_size, vocab_size, bias=True, dropout=0.0):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab_size, n_embd), wpe=nn.Embedding(block_size, n_embd),
            drop=nn.Dropout(dropout),
            h=nn.ModuleList(RefBlock(n_embd, n_head, bias) for _ in range(n_layer)),
            ln_f=RefLayerNorm(n_embd, bias)))
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight

    def forward(self, idx):  # all positions' logits (nanoGPT's training branch)
        pos = torch.arange(idx.shape[1])
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))


MODEL_ARGS = dict(n_layer=2, n_head=4, n_embd=32, block_size=24, bias=True, vocab_size=50,
                  dropout=0.0)


def ref_gpt(seed=0, **changes):
    torch.manual_seed(seed)
    args = {**MODEL_ARGS, **changes}
    model = RefGPT(**args)
    with torch.no_grad():  # non-trivial LayerNorm parameters, so their conversion is tested too
        for name, p in model.named_parameters():
            if "ln" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model.eval(), args


def save_nanogpt_ckpt(model, model_args, path, *, iter_num=5000, compiled=True):
    """What nanoGPT's train.py writes: a real AdamW state (two param groups, one step taken)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=6e-4, betas=(0.9, 0.95))
    loss = model(torch.zeros(1, 4, dtype=torch.long)).sum()
    loss.backward()
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}  # before the step
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    with torch.no_grad():  # the weights the checkpoint holds are the pre-step ones we compare to
        model.load_state_dict(saved)
    raw = torch.compile(model) if compiled else model  # prefixes keys with _orig_mod., no compile
    config = dict(out_dir="out", eval_interval=250, batch_size=12, learning_rate=6e-4,
                  dataset="shakespeare_char", compile=compiled, dtype="float32", **model_args)
    torch.save({"model": raw.state_dict(), "optimizer": optimizer.state_dict(),
                "model_args": model_args, "iter_num": iter_num,
                "best_val_loss": torch.tensor(1.4697), "config": config}, path)
    return path


TOKENS = torch.randint(0, 50, (2, 20), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("bias", [True, False])
def test_nanogpt_checkpoint_matches_reference_forward(tmp_path, bias):
    model, args = ref_gpt(bias=bias)
    path = save_nanogpt_ckpt(model, args, tmp_path / "ckpt.pt")
    assert any(k.startswith("_orig_mod.") for k in torch.load(path, weights_only=True)["model"])
    loaded = load_model(path, device="cpu")
    assert loaded.source == "nanogpt" and loaded.step == 5000
    assert "nanoGPT checkpoint (iter 5000)" in loaded.notes[0]
    assert "convert_nanogpt_weights" in loaded.notes[0]
    with torch.no_grad():
        diff = max_diff(loaded.model(TOKENS), model(TOKENS))
    print(f"nanoGPT ckpt.pt (bias={bias}): max |logit diff| = {diff:.2e}")
    assert diff < TOL
    cfg = loaded.model.cfg
    assert (cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.n_ctx, cfg.d_vocab) == (2, 4, 32, 24, 50)


def test_nanogpt_optimizer_state_is_never_kept(tmp_path):
    model, args = ref_gpt()
    path = save_nanogpt_ckpt(model, args, tmp_path / "ckpt.pt")
    loaded = load_model(path, device="cpu")
    # the model's tensors own their memory: none is a view of the (memory-mapped) file
    n_params = sum(p.numel() for p in loaded.model.parameters())
    assert all(p.untyped_storage().nbytes() <= p.numel() * p.element_size() * 2
               for p in loaded.model.parameters())
    assert n_params < 3 * sum(p.numel() for p in model.parameters())
    assert not hasattr(loaded, "optimizer") and "optimizer" not in loaded.extra


def test_bare_nanogpt_state_dict_needs_and_takes_heads(tmp_path):
    model, _ = ref_gpt(seed=3)
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(CheckpointError, match=r"nanoGPT state_dict recognised .*--n-heads"):
        load_model(tmp_path / "sd.pt")
    loaded = load_model(tmp_path / "sd.pt", n_heads=4, device="cpu")
    with torch.no_grad():
        assert max_diff(loaded.model(TOKENS), model(TOKENS)) < TOL
    result = invoke("score", tmp_path / "sd.pt", "--batch", 4)
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "error:" in result.output and "--n-heads" in result.output


@pytest.mark.parametrize("change, message", [
    (lambda ck: ck["model_args"].pop("n_embd"), r"nanoGPT checkpoint \(iter 5000\) recognised, but model_args lacks 'n_embd'"),
    (lambda ck: ck["model_args"].update(n_layer=3), r"model_args says n_layer=3 but the weights have n_layer=2"),
    (lambda ck: ck["model_args"].update(n_head=5), r"n_embd=32 is not divisible by n_head=5"),
    (lambda ck: ck["model_args"].update(bias=False), r"model_args says bias=False but the weights have biases"),
    (lambda ck: ck["model"].pop("_orig_mod.transformer.h.1.mlp.c_fc.weight"), r"'transformer.h.1.mlp.c_fc.weight' is missing"),
    (lambda ck: ck.pop("model_args"), r"no 'model_args' dict"),
])
def test_inconsistent_nanogpt_checkpoint_is_one_line(tmp_path, change, message):
    model, args = ref_gpt()
    path = save_nanogpt_ckpt(model, args, tmp_path / "ckpt.pt")
    ckpt = torch.load(path, weights_only=True)
    change(ckpt)
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=message):
        load_model(path)
    result = invoke("score", path)
    assert result.exit_code == 2 and result.output.startswith("error:")
    assert result.output.count("\n") == 1
