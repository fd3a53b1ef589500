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
    # torch.compile's wrapper names every key _orig_mod.<key> (nanoGPT's resume code strips it)
    state = {("_orig_mod." if compiled else "") + k: v for k, v in model.state_dict().items()}
    config = dict(out_dir="out", eval_interval=250, batch_size=12, learning_rate=6e-4,
                  dataset="shakespeare_char", compile=compiled, dtype="float32", **model_args)
    torch.save({"model": state, "optimizer": optimizer.state_dict(),
                "model_args": model_args, "iter_num": iter_num,
                "best_val_loss": torch.tensor(1.4697), "config": config}, path)
    return path


TOKENS = torch.randint(0, 50, (2, 20), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("bias", [True, False])
def test_nanogpt_checkpoint_matches_reference_forward(tmp_path, bias, record_property):
    model, args = ref_gpt(bias=bias)
    path = save_nanogpt_ckpt(model, args, tmp_path / "ckpt.pt")
    assert any(k.startswith("_orig_mod.") for k in torch.load(path, weights_only=True)["model"])
    loaded = load_model(path, device="cpu")
    assert loaded.source == "nanogpt" and loaded.step == 5000
    assert "nanoGPT checkpoint (iter 5000)" in loaded.notes[0]
    assert "convert_nanogpt_weights" in loaded.notes[0]
    with torch.no_grad():
        diff = max_diff(loaded.model(TOKENS), model(TOKENS))
    record_property("max_logit_diff", diff)  # nanoGPT ckpt.pt (bias={bias})
    assert diff < TOL
    cfg = loaded.model.cfg
    assert (cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.n_ctx, cfg.d_vocab) == (2, 4, 32, 24, 50)


def test_nanogpt_optimizer_state_is_never_kept(tmp_path, monkeypatch):
    model, args = ref_gpt()
    path = save_nanogpt_ckpt(model, args, tmp_path / "ckpt.pt")
    calls = []
    real_load = torch.load

    def spy(*a, **kw):
        calls.append(kw)
        return real_load(*a, **kw)

    monkeypatch.setattr(torch, "load", spy)
    loaded = load_model(path, device="cpu")
    # memory-mapped, so the optimizer's moments are never read from disk; weights_only throughout
    assert calls == [{"map_location": "cpu", "weights_only": True, "mmap": True}]
    assert "optimizer state not loaded" in loaded.notes[0]
    with torch.no_grad():
        before = loaded.model(TOKENS)
        with open(path, "r+b") as fh:  # overwrite the file in place: the model must not see it
            fh.write(b"\0" * path.stat().st_size)
        torch.testing.assert_close(loaded.model(TOKENS), before, rtol=0, atol=0)


def test_nanogpt_checkpoint_without_model_args_takes_heads(tmp_path):
    model, args = ref_gpt(seed=4)
    path = save_nanogpt_ckpt(model, args, tmp_path / "ckpt.pt")
    ckpt = torch.load(path, weights_only=True)
    del ckpt["model_args"]
    torch.save(ckpt, path)
    loaded = load_model(path, n_heads=4, device="cpu")
    assert loaded.step == 5000 and "without model_args" in loaded.notes[0]
    with torch.no_grad():
        assert max_diff(loaded.model(TOKENS), model(TOKENS)) < TOL


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
    (lambda ck: ck.pop("model_args"), r"no 'model_args' dict; pass --n-heads N"),
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


# --- Hugging Face single files -----------------------------------------------------------------

VOCAB = 96
HF_MODELS = {
    "gpt2": lambda: transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_layer=2, n_embd=64, n_head=4, vocab_size=VOCAB, n_positions=64)),
    # settings that leave no trace in the weights keep Hugging Face's defaults (as assumed)
    "neox": lambda: transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig(
        num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128,
        vocab_size=VOCAB)),
    "llama": lambda: transformers.LlamaForCausalLM(transformers.LlamaConfig(
        num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=128, vocab_size=VOCAB)),
}
HF_TOKENS = torch.randint(0, VOCAB, (2, 20), generator=torch.Generator().manual_seed(2))


@pytest.fixture(scope="module")
def hf_files(tmp_path_factory):
    """Per architecture: the save_pretrained directory, and its weights alone as .safetensors and
    as pytorch_model.bin (what transformers 4 wrote: torch.save of the state_dict)."""
    root = tmp_path_factory.mktemp("hf-files")
    out = {}
    for i, (name, make) in enumerate(HF_MODELS.items()):
        torch.manual_seed(10 + i)
        model = make().eval()
        model.save_pretrained(root / name)
        alone = root / f"{name}-alone"
        alone.mkdir()
        (root / name / "model.safetensors").rename(alone / "model.safetensors")
        (root / name / "model.safetensors").hardlink_to(alone / "model.safetensors")
        torch.save(model.state_dict(), alone / "pytorch_model.bin")
        out[name] = (root / name, alone, model)
    return out


def hf_logits(model, tokens=HF_TOKENS):
    with torch.no_grad():
        return model(tokens).logits


@pytest.mark.parametrize("fmt", ["model.safetensors", "pytorch_model.bin"])
@pytest.mark.parametrize("arch", list(HF_MODELS))
def test_hf_single_file_without_config_matches_hf_forward(hf_files, arch, fmt, record_property):
    _, alone, hf_model = hf_files[arch]
    with pytest.raises(CheckpointError, match=r"without a config.json recognised .*--n-heads"):
        load_model(alone / fmt)
    loaded = load_model(alone / fmt, n_heads=4, device="cpu")
    assert loaded.source == "hf-file" and "sizes read off the tensors" in loaded.notes[0]
    with torch.no_grad():
        diff = max_diff(loaded.model(HF_TOKENS), hf_logits(hf_model))
    record_property("max_logit_diff", diff)  # HF {arch} {fmt} without config
    assert diff < TOL
    if arch == "llama":  # grouped-query attention read off k_proj's rows
        assert loaded.model.cfg.n_key_value_heads == 2


@pytest.mark.parametrize("arch", list(HF_MODELS))
def test_hf_file_with_config_next_to_it_needs_no_heads(hf_files, arch, record_property):
    directory, _, hf_model = hf_files[arch]
    loaded = load_model(directory / "model.safetensors", device="cpu")
    assert "config from the" in loaded.notes[0]
    with torch.no_grad():
        diff = max_diff(loaded.model(HF_TOKENS), hf_logits(hf_model))
    record_property("max_logit_diff", diff)  # HF {arch} model.safetensors with config.json
    assert diff < TOL


def test_gpt2_base_model_file_as_the_hub_stores_it(hf_files, tmp_path):
    # the hub's gpt2 weights are a GPT2Model: keys without 'transformer.', no lm_head (tied)
    _, _, hf_model = hf_files["gpt2"]
    hf_model.transformer.save_pretrained(tmp_path)
    (tmp_path / "config.json").unlink()
    loaded = load_model(tmp_path / "model.safetensors", n_heads=4, device="cpu")
    with torch.no_grad():
        assert max_diff(loaded.model(HF_TOKENS), hf_logits(hf_model)) < TOL


def test_hf_file_heads_from_cli_and_wrong_heads_refused(hf_files, tmp_path):
    _, alone, _ = hf_files["gpt2"]
    result = invoke("score", alone / "model.safetensors", "--batch", 2)
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "GPT-2 weights without a config.json recognised" in result.output
    result = invoke("score", alone / "model.safetensors", "--n-heads", 5, "--batch", 2)
    assert result.exit_code == 2 and "not divisible by 5 heads" in result.output
    (tmp_path / "cfg.json").write_text(json.dumps({"no_such_field": 1}))
    result = invoke("score", alone / "model.safetensors", "--n-heads", 4,
                    "--config", tmp_path / "cfg.json")
    assert result.exit_code == 2 and "'no_such_field' is not a field of GPT2Config" in result.output


@pytest.mark.parametrize("arch, drop, message", [
    ("gpt2", "transformer.h.1.attn.c_proj.weight", r"GPT-2 weights do not match the config \(missing transformer.h.1.attn.c_proj.weight\)"),
    ("llama", "model.layers.0.self_attn.k_proj.weight", r"Llama weights without a config.json recognised, but 'layers.0.self_attn.k_proj.weight' is missing"),
])
def test_inconsistent_hf_file_is_one_line(hf_files, tmp_path, arch, drop, message):
    from safetensors.torch import load_file, save_file

    _, alone, _ = hf_files[arch]
    tensors = load_file(alone / "model.safetensors")
    del tensors[drop]
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=message):
        load_model(tmp_path / "model.safetensors", n_heads=4)
    result = invoke("score", tmp_path / "model.safetensors", "--n-heads", 4)
    assert result.exit_code == 2 and result.output.count("\n") == 1


def test_unknown_layout_names_what_is_accepted(tmp_path):
    torch.save({"encoder.layer.0.weight": torch.zeros(2, 2)}, tmp_path / "x.pt")
    result = invoke("score", tmp_path / "x.pt")
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "no layout the toolkit knows" in result.output and "nanoGPT" in result.output


# --- TransformerLens wrappers ------------------------------------------------------------------

@pytest.mark.parametrize("wrap, source, note", [
    (lambda m: {"cfg": m.cfg.to_dict(), "model": m.state_dict()}, "torch-config",
     "TransformerLens state_dict under 'model' with its config 'cfg'"),
    (lambda m: {"config": m.cfg, "model_state_dict": m.state_dict(), "step": 100,
                "optimizer": torch.optim.Adam(m.parameters()).state_dict()}, "torch-config",
     "under 'model_state_dict'"),
    (lambda m: {"state_dict": m.state_dict()}, "state-dict", None),
    (lambda m: {"config": {"lr": 1e-3, "batch_size": 8}, "model": m.state_dict()}, "state-dict",
     "'config' holds no model config"),
    (lambda m: m.state_dict(), "state-dict", None),
])
def test_transformerlens_saves(tmp_path, planted, wrap, source, note):
    torch.save(wrap(planted.model), tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt", device="cpu")
    assert loaded.source == source
    if note:
        assert note in " ".join(loaded.notes)
    with torch.no_grad():
        tokens = TOKENS % planted.model.cfg.d_vocab
        assert max_diff(loaded.model(tokens), planted.model(tokens)) == 0.0


# --- the planted induction circuit in every layout ---------------------------------------------

@pytest.fixture(scope="module")
def planted_square():
    """The planted circuit with d_model = n_heads · d_head, as nanoGPT and GPT-2 require."""
    from induction_toolkit.planted import planted_induction_model

    return planted_induction_model(d_vocab=32, n_ctx=32, n_heads=4)


def _fused_qkv(attn):
    return torch.cat([einops.rearrange(w, "i m h -> (i h) m") for w in (attn.W_Q, attn.W_K,
                                                                         attn.W_V)])


def planted_nanogpt(pc, path):
    """The planted model in nanoGPT's GPT (LayerNorms at identity, MLPs zero, lm_head untied)."""
    cfg = pc.model.cfg
    args = dict(n_layer=2, n_head=cfg.n_heads, n_embd=cfg.d_model, block_size=cfg.n_ctx,
                bias=True, vocab_size=cfg.d_vocab, dropout=0.0)
    ref = RefGPT(**args)
    with torch.no_grad():
        ref.lm_head.weight = nn.Parameter(pc.model.unembed.W_U.T.clone())
        ref.transformer.wte.weight.copy_(pc.model.embed.W_E)
        ref.transformer.wpe.weight.copy_(pc.model.pos_embed.W_pos)
        for block, tl in zip(ref.transformer.h, pc.model.blocks):
            a = tl.attn
            block.attn.c_attn.weight.copy_(_fused_qkv(a))
            block.attn.c_attn.bias.copy_(torch.cat([b.flatten() for b in (a.b_Q, a.b_K, a.b_V)]))
            block.attn.c_proj.weight.copy_(einops.rearrange(a.W_O, "i h m -> m (i h)"))
            block.attn.c_proj.bias.copy_(a.b_O)
            for p in block.mlp.parameters():
                p.zero_()
    return save_nanogpt_ckpt(ref.eval(), args, path), ref


def planted_gpt2(pc, directory):
    """The planted model in Hugging Face's GPT2LMHeadModel, saved by save_pretrained."""
    cfg = pc.model.cfg
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_layer=2, n_embd=cfg.d_model, n_head=cfg.n_heads, n_positions=cfg.n_ctx,
        vocab_size=cfg.d_vocab, tie_word_embeddings=False, bos_token_id=None, eos_token_id=None))
    with torch.no_grad():
        hf.transformer.wte.weight.copy_(pc.model.embed.W_E)
        hf.transformer.wpe.weight.copy_(pc.model.pos_embed.W_pos)
        hf.lm_head.weight.copy_(pc.model.unembed.W_U.T)
        for block, tl in zip(hf.transformer.h, pc.model.blocks):
            a = tl.attn
            block.attn.c_attn.weight.copy_(_fused_qkv(a).T)  # Conv1D stores [in, out]
            block.attn.c_attn.bias.copy_(torch.cat([b.flatten() for b in (a.b_Q, a.b_K, a.b_V)]))
            block.attn.c_proj.weight.copy_(einops.rearrange(a.W_O, "i h m -> (i h) m"))
            block.attn.c_proj.bias.copy_(a.b_O)
            for p in block.mlp.parameters():
                p.zero_()
    hf.eval().save_pretrained(directory)
    (directory / "config.json").unlink()
    return directory / "model.safetensors", hf


# A rotary model has no position embedding, so the planted circuit is rebuilt for NeoX and Llama:
# the previous-token head's key is its query turned ahead by one position in the 8 fastest rotary
# frequencies; the induction head matches tokens in dims rotary leaves (nearly) unturned.
RV, RH, RDH = 16, 4, 64  # vocabulary, heads, head size (d_model = 256)
TOK, PREV, OUT = 0, RV, 2 * RV  # residual subspaces: token | previous token | output


def rotary_circuit(kind):
    """Per layer [W_Q, W_K, W_V, W_O] in TransformerLens' head shapes; heads L0H1 and L1H2."""
    rd = RDH // 4 if kind == "neox" else RDH  # rotated dims per head (NeoX: rotary_pct 0.25)
    half, D, v = rd // 2, RH * RDH, torch.arange(RV)
    layers = [[torch.zeros(RH, D, RDH), torch.zeros(RH, D, RDH), torch.zeros(RH, D, RDH),
               torch.zeros(RH, RDH, D)] for _ in range(2)]
    WQ, WK, WV, WO = layers[0]
    for j in range(8):
        theta = 10000 ** (-2 * j / rd)  # Hugging Face's default rope_theta
        WQ[1, TOK:TOK + RV, j] = 1.0
        WK[1, TOK:TOK + RV, j] = math.cos(theta)
        WK[1, TOK:TOK + RV, j + half] = math.sin(theta)
    WV[1, TOK + v, v] = 1.0
    WO[1, v, PREV + v] = 1.0
    WQ, WK, WV, WO = layers[1]
    content = (rd + v) if kind == "neox" else (half - RV + v)  # unrotated / slowest frequencies
    WQ[2, TOK + v, content] = 3.0
    WK[2, PREV + v, content] = 3.0
    WV[2, TOK + v, v] = 1.0
    WO[2, v, OUT + v] = 1.0
    return layers


def planted_rotary(kind, directory):
    """The rotary circuit in GPTNeoXForCausalLM / LlamaForCausalLM (norms at 1, MLPs zero)."""
    D = RH * RDH
    if kind == "neox":
        hf = transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig(
            num_hidden_layers=2, hidden_size=D, num_attention_heads=RH, intermediate_size=64,
            vocab_size=RV))
        embed, blocks = hf.gpt_neox.embed_in, hf.gpt_neox.layers
    else:
        hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(
            num_hidden_layers=2, hidden_size=D, num_attention_heads=RH, num_key_value_heads=RH,
            intermediate_size=64, vocab_size=RV))
        embed, blocks = hf.model.embed_tokens, hf.model.layers
    v = torch.arange(RV)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            p.fill_(1.0 if "norm" in name and name.endswith("weight") else 0.0)
        embed.weight[v, TOK + v] = 1.0
        hf.get_output_embeddings().weight[v, OUT + v] = 10.0
        for block, (WQ, WK, WV, WO) in zip(blocks, rotary_circuit(kind)):
            if kind == "neox":  # NeoX fuses q, k, v per head: rows ordered (head, qkv, d_head)
                qkv = einops.rearrange(torch.stack([WQ, WK, WV]), "qkv i m h -> (i qkv h) m")
                block.attention.query_key_value.weight.copy_(qkv)
                block.attention.dense.weight.copy_(einops.rearrange(WO, "i h m -> m (i h)"))
            else:
                a = block.self_attn
                for proj, W in ((a.q_proj, WQ), (a.k_proj, WK), (a.v_proj, WV)):
                    proj.weight.copy_(einops.rearrange(W, "i m h -> (i h) m"))
                a.o_proj.weight.copy_(einops.rearrange(WO, "i h m -> m (i h)"))
    hf.eval().save_pretrained(directory)
    (directory / "config.json").unlink()
    return directory / "model.safetensors", hf


@pytest.fixture(scope="module")
def planted_layouts(tmp_path_factory, planted_square):
    """Per layout: (file, extra CLI args, tokens, the source project's own model)."""
    d = tmp_path_factory.mktemp("planted-layouts")
    tokens = torch.randint(0, 31, (2, 30), generator=torch.Generator().manual_seed(3))
    nano, ref = planted_nanogpt(planted_square, d / "ckpt.pt")
    out = {"nanogpt": (nano, [], tokens, ref)}
    gpt2, hf = planted_gpt2(planted_square, d / "gpt2")
    out["gpt2"] = (gpt2, ["--n-heads", 4], tokens, hf)
    for kind in ("neox", "llama"):
        path, hf = planted_rotary(kind, d / kind)
        out[kind] = (path, ["--n-heads", RH], tokens % RV, hf)
    return out


@pytest.mark.parametrize("fmt", ["nanogpt", "gpt2", "neox", "llama"])
def test_score_finds_the_planted_head_in_each_layout(planted_layouts, fmt, record_property):
    path, extra, tokens, ref = planted_layouts[fmt]
    loaded = load_model(path, n_heads=4, device="cpu")
    # in float64: the planted attention logits reach hundreds after LayerNorm, so float32
    # rounding alone differs by ~2e-4 between two exact implementations (measured: nanoGPT and
    # GPT-2 agree to 5e-13 in float64; Llama to 6e-7, its rotary tables stay float32-precise)
    with torch.no_grad():
        want = ref.double()(tokens)
        got = loaded.model.to(torch.float64, print_details=False)(tokens)
    diff = max_diff(got, getattr(want, "logits", want))
    record_property("max_logit_diff_float64", diff)
    assert diff < TOL / 10
    result = invoke("score", path, *extra, "--json", "--batch", 8)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [(h["layer"], h["head"]) for h in data["induction_heads"]] == [(1, 2)]
    assert [(h["layer"], h["head"]) for h in data["previous_token_heads"]] == [(0, 1)]
    assert data["model"]["source"] in ("nanogpt", "hf-file")


@pytest.mark.parametrize("command", [
    ["ablate", "--json", "--batch", 4],
    ["patch", "--json", "--batch", 4],
    ["weights", "--json", "--max-tokens", 32],
    pytest.param(["report", "--batch", 4], marks=pytest.mark.slow),  # ~10 s: a whole report
    ["compare", "--no-figure", "--json", "--batch", 4],
])
def test_every_command_accepts_a_nanogpt_checkpoint(planted_layouts, tmp_path, command):
    path = planted_layouts["nanogpt"][0]
    args = [command[0], path, *command[1:]]
    if command[0] == "report":
        args += ["--out", tmp_path / "r.html"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    if "--json" in command:
        data = json.loads(result.stdout)
        assert "nanogpt" in json.dumps(data.get("model", data))
    else:
        assert (tmp_path / "r.html").stat().st_size > 1000
