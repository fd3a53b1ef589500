"""Single Hugging Face weight files (``model.safetensors``, ``pytorch_model.bin``) of GPT-2, GPT-NeoX
and Llama models, with or without their ``config.json``.

The file is read by the toolkit's safe loader; its keys name the architecture. With a Hugging
Face ``config.json`` next to it, that config is used (and a tokenizer there is attached).
Without one the config is rebuilt from the tensor shapes plus the architecture's Hugging Face
defaults for what leaves no trace in the weights (activation, norm epsilon, rotary settings),
each stated in ``notes``; the number of heads never shows in these layouts, so it comes from
``--n-heads`` (or ``--config``) unless an old rotary buffer reveals the head size. The weights
are put into the Hugging Face model class and converted by TransformerLens' own
``convert_gpt2_weights`` / ``convert_neox_weights`` / ``convert_llama_weights``, exactly as a
Hugging Face directory is (``pretrained.hooked_from_hf``).
"""

from pathlib import Path
from typing import Any

import torch
from transformers.utils import CONFIG_NAME as HF_CONFIG_NAME  # Hugging Face's file, not a run's

from ..errors import CheckpointError

# layout → (causal-LM key prefix, key that identifies it under that prefix, HF class names)
LAYOUTS = {
    "gpt2": ("transformer.", "wte.weight", "GPT2Config", "GPT2LMHeadModel", "GPT-2"),
    "neox": ("gpt_neox.", "embed_in.weight", "GPTNeoXConfig", "GPTNeoXForCausalLM", "GPT-NeoX"),
    "llama": ("model.", "embed_tokens.weight", "LlamaConfig", "LlamaForCausalLM", "Llama"),
}
# the head-count field of each config class, and the TransformerLens names users may pass instead
_HEADS = {"gpt2": "n_head", "neox": "num_attention_heads", "llama": "num_attention_heads"}
_CTX = {"gpt2": "n_positions", "neox": "max_position_embeddings",
        "llama": "max_position_embeddings"}
# config keys older transformers versions wrote, still accepted by the config classes
_LEGACY_KEYS = {"rotary_pct", "rotary_emb_base", "rope_theta"}
# buffers older transformers versions saved; the model rebuilds them
_BUFFER_SUFFIXES = (".attn.bias", ".attn.masked_bias", ".attention.bias", ".attention.masked_bias",
                    ".rotary_emb.inv_freq")


def hf_layout(sd: dict) -> str | None:
    """``gpt2``, ``neox`` or ``llama`` for a Hugging Face state_dict (causal LM or base model)."""
    for name, (prefix, marker, *_rest) in LAYOUTS.items():
        if prefix + marker in sd or marker in sd:
            if name == "gpt2":  # Conv1D c_attn [d, 3d]; nanoGPT's Linear is [3d, d]
                w = sd.get(prefix + "h.0.attn.c_attn.weight", sd.get("h.0.attn.c_attn.weight"))
                if not (hasattr(w, "shape") and w.ndim == 2 and w.shape[1] == 3 * w.shape[0]):
                    continue
            return name
    return None


def load_single_file(kind: str, state_dict: dict, path: Path, overrides: dict,
                     device: str | None) -> Any:
    """A ``LoadedModel`` (source ``hf-file``) from one Hugging Face weight file's tensors."""
    from .. import pretrained
    from ..checkpoints import LoadedModel

    where = str(path)
    prefix, _marker, cfg_cls, model_cls, label = LAYOUTS[kind]
    sd, base = _causal_lm_keys(state_dict, prefix)
    inv_freq = next((v for k, v in sd.items() if k.endswith(".rotary_emb.inv_freq")), None)
    sd = {k: v for k, v in sd.items() if not k.endswith(_BUFFER_SUFFIXES)}
    notes: list[str] = []
    tokenizer = None
    if path.is_file() and pretrained.is_hf_weight_file(path) and pretrained.is_hf_directory(path.parent):
        hf_config = _config_next_to(path)
        for key, value in _hf_overrides(kind, type(hf_config), overrides, where).items():
            setattr(hf_config, key, value)
        if "n_heads" in overrides:
            setattr(hf_config, _HEADS[kind], int(overrides["n_heads"]))
        notes.append(f"Hugging Face {label} weights, config from the {path.parent.name}/"
                     f"{HF_CONFIG_NAME} next to them")
        tokenizer = pretrained._local_tokenizer(path.parent)
    else:
        hf_config, assumed = _infer_config(kind, sd, inv_freq, overrides, where)
        notes.append(f"Hugging Face {label} weights without a {HF_CONFIG_NAME}: sizes read off the "
                     "tensors" + (f"; assumed {assumed} (Hugging Face defaults; override with "
                                  "--config)" if assumed else ""))
    if base and kind != "gpt2":  # GPT-2 always ties them; for the others it is a guess
        notes.append("a base model without an output layer: the unembedding is tied to the "
                     "token embedding")
    hf_config.architectures = [model_cls]
    hf_model = _hf_model(hf_config, sd, where, label)
    cfg = pretrained.tl_config(where, hf_config.to_dict())
    model = pretrained.hooked_from_hf(hf_model, cfg, where, device=device)
    notes[0] += f", converted with transformer_lens convert_{'gpt2' if kind == 'gpt2' else kind}_weights"
    if tokenizer is not None:
        model.tokenizer = tokenizer
    else:
        notes.append("no tokenizer: scoring without a BOS token")
    return LoadedModel(model, where, "hf-file", notes=notes)


def _causal_lm_keys(sd: dict, prefix: str) -> tuple[dict, bool]:
    """Keys as the causal-LM class names them; True when the file holds a base model (no head)."""
    sd = {k.removeprefix("_orig_mod."): v for k, v in sd.items()}
    if not any(k.startswith(prefix) for k in sd):
        sd = {prefix + k: v for k, v in sd.items()}
        return sd, True
    return sd, False


def _infer_config(kind: str, sd: dict, inv_freq: Any, overrides: dict, where: str) -> tuple[Any, str]:
    """The Hugging Face config implied by the shapes, and the defaults it had to assume."""
    import transformers

    prefix, _marker, cfg_cls, _model_cls, label = LAYOUTS[kind]
    what = f"Hugging Face {label} weights without a {HF_CONFIG_NAME}"

    def need(key: str) -> tuple[int, ...]:
        if prefix + key not in sd and key not in sd:
            raise CheckpointError(f"{where}: {what} recognised, but '{key}' is missing")
        return tuple(sd.get(prefix + key, sd.get(key)).shape)

    block = {"gpt2": "h", "neox": "layers", "llama": "layers"}[kind]
    layers = sorted({int(k[len(prefix):].split(".")[1]) for k in sd
                     if k.startswith(f"{prefix}{block}.")})
    if not layers or layers != list(range(len(layers))):
        raise CheckpointError(f"{where}: {what}: blocks are not numbered 0..n-1 (found {layers})")
    fields: dict[str, Any] = {}
    assumed: list[tuple[str, Any]] = []  # (config field, default) for fields without a trace
    heads = overrides.get("n_heads")
    if kind == "gpt2":
        vocab, d = need("wte.weight")
        n_pos = need("wpe.weight")[0]
        d_mlp = need("h.0.mlp.c_fc.weight")[1]
        fields.update(n_embd=d, n_layer=len(layers), vocab_size=vocab, n_positions=n_pos,
                      n_inner=d_mlp, tie_word_embeddings=_tied(sd, "transformer.wte.weight",
                                                                 "lm_head.weight"))
        assumed += [("activation_function", "gelu_new"), ("layer_norm_epsilon", 1e-5)]
    elif kind == "neox":
        vocab, d = need("embed_in.weight")
        d_mlp = need("layers.0.mlp.dense_h_to_4h.weight")[0]
        fields.update(hidden_size=d, num_hidden_layers=len(layers), vocab_size=vocab,
                      intermediate_size=d_mlp,
                      tie_word_embeddings=not any(k in sd for k in ("embed_out.weight",
                                                                    "lm_head.weight")))
        if inv_freq is not None and heads is not None:
            fields["rotary_pct"] = 2 * inv_freq.shape[0] / (d // int(heads))
        else:
            assumed.append(("rotary_pct", 0.25))
        assumed += [("max_position_embeddings", 2048), ("rope_theta", 10000),
                    ("use_parallel_residual", True), ("hidden_act", "gelu"),
                    ("layer_norm_eps", 1e-5)]
    else:
        vocab, d = need("embed_tokens.weight")
        q_rows = need("layers.0.self_attn.q_proj.weight")[0]
        kv_rows = need("layers.0.self_attn.k_proj.weight")[0]
        d_mlp = need("layers.0.mlp.up_proj.weight")[0]
        if heads is None and inv_freq is not None:
            heads = q_rows // (2 * inv_freq.shape[0])  # an old rotary buffer gives the head size
        fields.update(hidden_size=d, num_hidden_layers=len(layers), vocab_size=vocab,
                      intermediate_size=d_mlp,
                      tie_word_embeddings=_tied(sd, "model.embed_tokens.weight", "lm_head.weight"))
        if heads is not None:
            if q_rows % int(heads):
                raise CheckpointError(f"{where}: {what}: q_proj has {q_rows} rows, not divisible "
                                      f"by {heads} heads")
            head_dim = q_rows // int(heads)
            if kv_rows % head_dim:
                raise CheckpointError(f"{where}: {what}: k_proj has {kv_rows} rows, not a "
                                      f"multiple of the head size {head_dim}")
            fields.update(head_dim=head_dim, num_key_value_heads=kv_rows // head_dim)
        assumed += [("max_position_embeddings", 2048), ("rope_theta", 10000),
                    ("rms_norm_eps", 1e-6), ("hidden_act", "silu")]
    if heads is None:
        raise CheckpointError(f"{where}: {what} recognised ({len(layers)} layers, d_model={d}), "
                              "but the number of attention heads leaves no trace in its weights; "
                              f"pass --n-heads N, or put its {HF_CONFIG_NAME} next to the file")
    if d % int(heads) and kind != "llama":
        raise CheckpointError(f"{where}: {what}: d_model={d} is not divisible by {heads} heads")
    fields[_HEADS[kind]] = int(heads)
    cls = getattr(transformers, cfg_cls)
    fields.update(_hf_overrides(kind, cls, overrides, where))
    guessed = ", ".join(f"{k}={v}" for k, v in assumed if k not in fields)
    fields.setdefault(_CTX[kind], 2048)
    config = cls(**fields)
    for tok in ("bos_token_id", "eos_token_id"):  # GPT-2's defaults point past a small vocabulary
        if getattr(config, tok, None) is not None and getattr(config, tok) >= vocab:
            setattr(config, tok, None)
    return config, guessed


def _tied(sd: dict, embed: str, head: str) -> bool:
    return head not in sd or (sd[head].shape == sd[embed].shape and torch.equal(sd[head], sd[embed]))


def _hf_overrides(kind: str, cls: Any, overrides: dict, where: str) -> dict:
    """``--config`` fields for a Hugging Face file: TransformerLens names or the config class's own."""
    known = set(cls().to_dict()) | _LEGACY_KEYS
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if key == "n_heads":
            continue
        if key == "n_ctx":
            out[_CTX[kind]] = value
        elif key == "n_key_value_heads" and kind == "llama":
            out["num_key_value_heads"] = value
        elif key in known:
            out[key] = value
        else:
            raise CheckpointError(f"{where}: --config field '{key}' is not a field of "
                                  f"{cls.__name__}; for a Hugging Face file pass n_heads, n_ctx or "
                                  f"{cls.__name__} fields (e.g. rope_theta)")
    return out


def _config_next_to(path: Path) -> Any:
    from transformers import AutoConfig

    from .. import pretrained

    try:
        with pretrained.offline():
            config = AutoConfig.from_pretrained(str(path.parent), local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path.parent}/{HF_CONFIG_NAME} cannot be read by Hugging Face "
                              f"({pretrained._first_line(exc)})") from None
    return config


def _hf_model(config: Any, sd: dict, where: str, label: str) -> Any:
    """The Hugging Face model holding ``sd`` (no random init; tied heads re-tied)."""
    from transformers import AutoModelForCausalLM
    from transformers.initialization import no_init_weights

    from .. import pretrained

    with pretrained._quiet_transformers(), no_init_weights():
        model = AutoModelForCausalLM.from_config(config)
    expected = model.state_dict()
    # transformers ≥ 5.14 calls GPT-NeoX's output layer lm_head; older files say embed_out
    for a, b in (("embed_out.weight", "lm_head.weight"), ("lm_head.weight", "embed_out.weight")):
        if a in sd and a not in expected and b in expected:
            sd = {(b if k == a else k): v for k, v in sd.items()}
    tied = bool(getattr(config, "tie_word_embeddings", False))
    missing = sorted(k for k in expected if k not in sd and not (tied and k.startswith(
        ("lm_head.", "embed_out."))))
    unexpected = sorted(k for k in sd if k not in expected)
    if missing or unexpected:
        from ..checkpoints import _few
        parts = ([f"missing {_few(missing)}"] if missing else []) + (
            [f"unexpected {_few(unexpected)}"] if unexpected else [])
        raise CheckpointError(f"{where}: Hugging Face {label} weights do not match the config "
                              f"({'; '.join(parts)})")
    for k, v in sd.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise CheckpointError(f"{where}: '{k}' has shape {tuple(v.shape)} but the {label} "
                                  f"config needs {tuple(expected[k].shape)}")
    weights = {k: v.to(expected[k].dtype) for k, v in sd.items() if k in expected}
    model.load_state_dict(weights, strict=False, assign=True)
    if tied:
        model.tie_weights()
    return model.eval()
