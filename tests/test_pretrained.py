"""Pretrained models: tiny random Hugging Face models saved to disk, converted offline, checked
against the Hugging Face forward pass itself (logits and attention patterns)."""

import json
import time

import pytest
import torch
from typer.testing import CliRunner

from cli.main import app
from induction_toolkit.checkpoints import load_model, save_model
from induction_toolkit.errors import CheckpointError
from induction_toolkit.scores import score_model
from induction_toolkit.tasks.repeated import RepeatedTokensConfig, repeated_tokens

transformers = pytest.importorskip("transformers")
runner = CliRunner()
VOCAB = 128


def _gpt2():
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_layer=2, n_embd=64, n_head=4, vocab_size=VOCAB, n_positions=64))


def _neox():
    return transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig(
        num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128,
        vocab_size=VOCAB, max_position_embeddings=64, rotary_pct=0.5))


def _llama():
    # grouped-query attention (4 query heads share 2 key/value heads), as in Llama 2/3
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(
        num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=128, vocab_size=VOCAB, max_position_embeddings=64))


# directory names matter: TransformerLens guesses the architecture from names holding 'llama'
ARCHES = {"gpt2-tiny": _gpt2, "pythia-neox-tiny": _neox, "my-llama-tiny": _llama}


def _word_tokenizer():
    """A small fast tokenizer with a BOS token, built locally (no download)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit

    vocab = {"<bos>": 0, "<unk>": 1, **{f"w{i}": i for i in range(2, VOCAB)}}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = WhitespaceSplit()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>",
                                                unk_token="<unk>")


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    out = {}
    for i, (name, make) in enumerate(ARCHES.items()):
        torch.manual_seed(i)
        model = make().eval()
        model.save_pretrained(root / name)
        out[name] = (root / name, model)
    _word_tokenizer().save_pretrained(root / "gpt2-tiny")
    return out


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test instead of waiting on it."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("name", list(ARCHES))
def test_converted_model_matches_hf_logits_and_patterns(hf_dirs, name, no_network):
    path, hf = hf_dirs[name]
    loaded = load_model(path, device="cpu")
    assert loaded.source == "hf"
    model = loaded.model
    assert (model.cfg.n_layers, model.cfg.n_heads, model.cfg.d_vocab) == (2, 4, VOCAB)
    tokens = torch.randint(0, VOCAB, (3, 40))
    hf.config._attn_implementation = "eager"  # output_attentions needs materialised patterns
    with torch.no_grad():
        ref = hf(tokens, output_attentions=True)
        logits, cache = model.run_with_cache(tokens)
    # no LayerNorm folding or unembedding centring is applied, so raw logits must agree
    assert (logits - ref.logits).abs().max().item() <= 1e-4
    for layer in range(2):
        ours = cache[f"blocks.{layer}.attn.hook_pattern"]
        assert (ours - ref.attentions[layer]).abs().max().item() <= 1e-4

    # the prefix-matching score, recomputed by hand from Hugging Face's own attention patterns
    task = RepeatedTokensConfig(d_vocab=VOCAB, seq_len=10, repeats=3)
    toks = repeated_tokens(task, 4, seed=1)
    with torch.no_grad():
        att = hf(toks, output_attentions=True).attentions
    expected = torch.zeros(2, 4)
    queries = range(task.seq_len, toks.shape[1])
    for layer in range(2):
        for b in range(toks.shape[0]):
            for i in queries:
                keys = [j for j in range(1, i + 1) if toks[b, j - 1] == toks[b, i]]
                expected[layer] += att[layer][b, :, i, keys].sum(-1)
    expected /= toks.shape[0] * len(queries)
    got = score_model(model, task=task, tokens=toks).prefix_matching
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_llama_keeps_grouped_query_attention(hf_dirs):
    model = load_model(hf_dirs["my-llama-tiny"][0], device="cpu").model
    assert model.cfg.n_key_value_heads == 2
    assert model.cfg.normalization_type == "RMS" and model.cfg.positional_embedding_type == "rotary"


def test_local_tokenizer_supplies_bos_and_special_tokens(hf_dirs, no_network):
    loaded = load_model(hf_dirs["gpt2-tiny"][0], device="cpu")
    assert loaded.bos_token_id == 0
    assert {0, 1} <= set(loaded.special_token_ids)
    result = runner.invoke(app, ["score", str(hf_dirs["gpt2-tiny"][0]), "--json", "--batch", "4"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["model"]["source"] == "hf" and data["data"]["bos_token_id"] == 0
    assert len(data["heads"]) == 8


def test_dtype_loads_reduced_precision(hf_dirs):
    model = load_model(hf_dirs["pythia-neox-tiny"][0], device="cpu", dtype="bfloat16").model
    assert model.cfg.dtype == torch.bfloat16
    assert model.blocks[0].attn.W_Q.dtype == torch.bfloat16
    with pytest.raises(CheckpointError, match="unknown dtype 'float8'"):
        load_model(hf_dirs["pythia-neox-tiny"][0], device="cpu", dtype="float8")


# --- TransformerLens names: the local Hugging Face cache, never the network -------------------

@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_uncached_name_fails_fast_with_one_line(hf_cache, no_network):
    start = time.perf_counter()
    result = runner.invoke(app, ["score", "gpt2"])
    elapsed = time.perf_counter() - start
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: model 'gpt2' is not available offline; download it "
                                     "once, or pass a local directory")
    assert elapsed < 5


def test_name_loads_from_a_populated_cache(hf_cache, hf_dirs, no_network):
    # the Hugging Face cache layout: models--{org}--{name}/{refs/main, snapshots/{revision}/}
    repo = hf_cache / "models--gpt2"
    snap = repo / "snapshots" / ("0" * 40)
    _, hf = hf_dirs["gpt2-tiny"]
    hf.save_pretrained(snap)
    cfg = json.loads((snap / "config.json").read_text())
    cfg["n_ctx"] = cfg["n_positions"]  # as in the real gpt2 config.json
    (snap / "config.json").write_text(json.dumps(cfg))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    loaded = load_model("gpt2", device="cpu")
    assert loaded.source == "pretrained" and loaded.model.cfg.model_name == "gpt2"
    tokens = torch.randint(0, VOCAB, (2, 16))
    with torch.no_grad():
        assert (loaded.model(tokens) - hf(tokens).logits).abs().max().item() <= 1e-4


@pytest.mark.parametrize("arg, message", [
    ("not-a-model-name", "error: unknown model 'not-a-model-name': not a file, a directory, nor "
                         "a TransformerLens model name"),
    ("runs/missing", "error: no such file or directory: runs/missing"),
    ("missing.safetensors", "error: no such file or directory: missing.safetensors"),
    ("Qwen/Qwen-1_8B", "error: model 'Qwen/Qwen-1_8B' needs code shipped with the model "
                       "(trust_remote_code), which the toolkit never runs"),
])
def test_unknown_names_and_missing_paths_are_one_line(arg, message):
    result = runner.invoke(app, ["score", arg])
    assert result.exit_code == 2
    assert result.stderr.strip() == message


def test_directory_with_config_but_no_weights(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2",
                                                      "architectures": ["GPT2LMHeadModel"]}))
    result = runner.invoke(app, ["score", str(tmp_path)])
    assert result.exit_code == 2
    assert "has a config.json but no weights" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_run_config_is_not_mistaken_for_hf(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"preset": "attn-only-2l"}))
    with pytest.raises(CheckpointError, match="neither a training run"):
        load_model(tmp_path)


# --- compare ----------------------------------------------------------------------------------

def test_compare_puts_toy_and_hf_models_in_one_table(tmp_path, planted, hf_dirs):
    ckpt = save_model(planted.model, tmp_path / "planted.safetensors", task=planted.task_dict())
    hf_dir = hf_dirs["pythia-neox-tiny"][0]
    fig = tmp_path / "cmp.png"
    result = runner.invoke(app, ["compare", str(ckpt), str(hf_dir), "--json", "--batch", "8",
                                 "--out", str(fig)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    toy, hf = data["models"]
    for m in (toy, hf):
        assert {"name", "n_layers", "n_heads", "max_prefix_matching", "icl_score", "top_heads",
                "heads"} <= set(m)
        assert len(m["heads"]) == m["n_layers"] * m["n_heads"]
        assert m["max_prefix_matching"] == max(h["prefix_matching"] for h in m["heads"])
    assert (toy["name"], hf["name"]) == (str(ckpt), str(hf_dir))
    assert (toy["source"], hf["source"]) == ("toolkit", "hf")
    best = toy["top_heads"][0]
    assert (best["layer"], best["head"]) == planted.induction_head and best["score"] > 0.9
    assert hf["max_prefix_matching"] < 0.5  # a random network has no induction head
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    table = runner.invoke(app, ["compare", str(ckpt), str(hf_dir), "--batch", "8",
                                "--no-figure"])
    assert table.exit_code == 0, table.output
    out = " ".join(table.stdout.split())
    assert "L1H2 1.00" in out and "pythia-neox-tiny" in out


def test_compare_bad_model_is_one_line(tmp_path, planted):
    ckpt = save_model(planted.model, tmp_path / "planted.safetensors")
    result = runner.invoke(app, ["compare", str(ckpt), "gpt2-nonexistent-xyz", "--no-figure"])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error: unknown model 'gpt2-nonexistent-xyz'")
