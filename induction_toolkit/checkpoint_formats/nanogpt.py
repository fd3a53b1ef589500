"""nanoGPT (github.com/karpathy/nanoGPT): ``train.py``'s ``ckpt.pt`` and a bare ``GPT.state_dict()``.

``train.py`` saves ``{"model", "optimizer", "model_args", "iter_num", "best_val_loss", "config"}``;
``model`` keys carry an ``_orig_mod.`` prefix when the model was ``torch.compile``d. Only
``model`` and ``model_args`` are used; the loader memory-maps the file, so the optimizer's
moment tensors are never read from disk and are dropped with the rest of the dict.

nanoGPT's ``GPT``: learned positions, pre-LayerNorm blocks (eps 1e-5, biases optional), fused
``c_attn`` Linear ``[3·n_embd, n_embd]``, a 4·n_embd exact-GELU MLP and an unembedding tied to
the token embedding. The weights are converted by TransformerLens' ``convert_nanogpt_weights``.
"""

from typing import Any

import torch

from ..errors import CheckpointError

REQUIRED_ARGS = ("n_layer", "n_head", "n_embd", "block_size", "vocab_size")
CONVERTER = "transformer_lens convert_nanogpt_weights"


def is_nanogpt(sd: dict) -> bool:
    """A state_dict (prefix already stripped) in nanoGPT's layout: Linear (not Conv1D) ``c_attn``."""
    w = sd.get("transformer.h.0.attn.c_attn.weight")
    return ("transformer.wte.weight" in sd and "lm_head.weight" in sd and hasattr(w, "shape")
            and w.ndim == 2 and w.shape[0] == 3 * w.shape[1])


def is_train_checkpoint(obj: dict) -> bool:
    """The dict nanoGPT's ``train.py`` writes (``model_args`` beside ``model``)."""
    from . import strip_prefix

    model = obj.get("model")
    return isinstance(model, dict) and ("model_args" in obj or (
        "iter_num" in obj and is_nanogpt(strip_prefix(model))))


def load_train_checkpoint(obj: dict, where: str, overrides: dict, device: str | None) -> Any:
    """A ``LoadedModel`` from ``train.py``'s checkpoint dict; ``step`` is its ``iter_num``."""
    from . import strip_prefix

    sd = strip_prefix(obj["model"])
    args = obj.get("model_args")
    iter_num = obj.get("iter_num")
    what = "nanoGPT checkpoint" + (f" (iter {iter_num})" if isinstance(iter_num, int) else "")
    if not isinstance(args, dict):
        if "n_heads" not in overrides:
            raise CheckpointError(f"{where}: {what} recognised by its 'model' and 'iter_num' but "
                                  "it has no 'model_args' dict; pass --n-heads N (the other "
                                  "sizes are read off the weights)")
        loaded = load_state_dict(sd, where, overrides, device)
        loaded.notes[0] = f"{what} without model_args: " + loaded.notes[0]
        loaded.step = iter_num if isinstance(iter_num, int) else None
        return loaded
    if not is_nanogpt(sd):
        raise CheckpointError(f"{where}: {what} recognised by 'model_args', but 'model' is not "
                              "in nanoGPT's layout (needs transformer.wte.weight, lm_head.weight "
                              "and Linear transformer.h.N.attn.c_attn.weight)")
    # n_head has no trace in the weights; every other field is checked against the shapes
    missing = [k for k in REQUIRED_ARGS if k not in args
               and not (k == "n_head" and "n_heads" in overrides)]
    if missing:
        raise CheckpointError(f"{where}: {what} recognised, but model_args lacks "
                              f"{', '.join(repr(k) for k in missing)}" +
                              ("; pass --n-heads N" if missing == ["n_head"] else ""))
    shapes = _shapes(sd, where, what)
    for key, got in (("n_layer", shapes["n_layer"]), ("n_embd", shapes["n_embd"]),
                     ("block_size", shapes["block_size"]), ("vocab_size", shapes["vocab_size"])):
        if int(args[key]) != got:
            raise CheckpointError(f"{where}: {what}: model_args says {key}={args[key]} but the "
                                  f"weights have {key}={got}")
    if "bias" in args and bool(args["bias"]) != shapes["bias"]:
        raise CheckpointError(f"{where}: {what}: model_args says bias={args['bias']} but the "
                              f"weights {'have' if shapes['bias'] else 'lack'} biases")
    n_head = int(overrides.get("n_heads", args.get("n_head", 0)))
    notes = [f"{what}, converted with {CONVERTER}; optimizer state not loaded"]
    if isinstance(obj.get("best_val_loss"), (int, float, torch.Tensor)):
        notes[0] += f"; best val loss {float(obj['best_val_loss']):.4g}"
    loaded = _convert(sd, shapes, n_head, where, what, overrides, notes, device)
    loaded.step = iter_num if isinstance(iter_num, int) else None
    return loaded


def load_state_dict(sd: dict, where: str, overrides: dict, device: str | None) -> Any:
    """A ``LoadedModel`` from a bare ``GPT.state_dict()``; the head count comes from ``--n-heads``."""
    what = "nanoGPT state_dict"
    shapes = _shapes(sd, where, what)
    if "n_heads" not in overrides:
        raise CheckpointError(f"{where}: {what} recognised ({shapes['n_layer']} layers, "
                              f"n_embd={shapes['n_embd']}), but the number of attention heads "
                              "leaves no trace in its weights; pass --n-heads N (its "
                              "model_args' n_head)")
    notes = [f"{what}, converted with {CONVERTER}; heads from --n-heads"]
    return _convert(sd, shapes, int(overrides["n_heads"]), where, what, overrides, notes,
                    device)


def _shapes(sd: dict, where: str, what: str) -> dict[str, Any]:
    """Sizes read off the weights; a key or shape that contradicts the others is an error."""
    def need(key: str) -> tuple[int, ...]:
        if key not in sd:
            raise CheckpointError(f"{where}: {what} recognised, but '{key}' is missing")
        return tuple(sd[key].shape)

    vocab, d = need("transformer.wte.weight")
    block_size, d_pos = need("transformer.wpe.weight")
    layers = sorted({int(k.split(".")[2]) for k in sd if k.startswith("transformer.h.")})
    if layers != list(range(len(layers))) or not layers:
        raise CheckpointError(f"{where}: {what}: blocks are not numbered 0..n-1 (found {layers})")
    d_mlp = need("transformer.h.0.mlp.c_fc.weight")[0]
    want = {"transformer.wpe.weight": (block_size, d), "lm_head.weight": (vocab, d),
            "transformer.ln_f.weight": (d,)}
    for layer in layers:
        b = f"transformer.h.{layer}"
        want.update({f"{b}.attn.c_attn.weight": (3 * d, d), f"{b}.attn.c_proj.weight": (d, d),
                     f"{b}.mlp.c_fc.weight": (d_mlp, d), f"{b}.mlp.c_proj.weight": (d, d_mlp),
                     f"{b}.ln_1.weight": (d,), f"{b}.ln_2.weight": (d,)})
    for key, shape in want.items():
        if need(key) != shape:
            raise CheckpointError(f"{where}: {what}: '{key}' has shape {need(key)}, but "
                                  f"transformer.wte.weight implies {shape}")
    return {"n_layer": len(layers), "n_embd": d, "block_size": block_size, "vocab_size": vocab,
            "d_mlp": d_mlp, "bias": "transformer.ln_f.bias" in sd}


def _convert(sd: dict, shapes: dict, n_head: int, where: str, what: str, overrides: dict,
             notes: list[str], device: str | None = None) -> Any:
    from transformer_lens.pretrained.weight_conversions.nanogpt import convert_nanogpt_weights

    from ..checkpoints import LoadedModel, _config_with, _instantiate

    d = shapes["n_embd"]
    if n_head < 1 or d % n_head:
        raise CheckpointError(f"{where}: {what}: n_embd={d} is not divisible by n_head={n_head}")
    # nanoGPT's Block: LayerNorm(eps 1e-5) → attention, LayerNorm → Linear, exact GELU, Linear
    fields = {"n_layers": shapes["n_layer"], "d_model": d, "n_heads": n_head,
              "d_head": d // n_head, "d_mlp": shapes["d_mlp"], "n_ctx": shapes["block_size"],
              "d_vocab": shapes["vocab_size"], "act_fn": "gelu", "normalization_type": "LN",
              "positional_embedding_type": "standard", "eps": 1e-5, "model_name": "nanoGPT"}
    cfg = _config_with(fields, {k: v for k, v in overrides.items() if k != "n_heads"})
    # the causal-mask buffers of pre-flash nanoGPT are rebuilt by TransformerLens
    weights = {k: v for k, v in sd.items() if not k.endswith(".attn.bias")}
    try:
        converted = convert_nanogpt_weights(weights, cfg)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{where}: {what}: {CONVERTER} failed "
                              f"({type(exc).__name__}: {exc})") from None
    # with biases the converter leaves the unembedding bias out; nanoGPT's lm_head has none
    converted.setdefault("unembed.b_U", torch.zeros(cfg.d_vocab_out, dtype=cfg.dtype))
    model = _instantiate(cfg, converted, device, where)
    return LoadedModel(model, where, "nanogpt", notes=notes)
