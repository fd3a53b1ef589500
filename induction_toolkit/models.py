"""Model presets and the one place models are built.

Every model in the toolkit is a TransformerLens ``HookedTransformer`` built here, from a
``HookedTransformerConfig``. TransformerLens 3.x warns that ``HookedTransformer`` is deprecated in
favour of its 4.x bridge; we pin ``<4`` deliberately (every analysis relies on its hook names), so
that one warning is silenced here and nowhere else.
"""

import contextlib
import dataclasses
import json
import warnings
from typing import Any

import numpy as np
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from .errors import ConfigError


def _attn_only(n_layers: int, *, d_model: int, n_heads: int) -> dict[str, Any]:
    return dict(
        n_layers=n_layers,
        d_model=d_model,
        n_heads=n_heads,
        d_head=d_model // n_heads,
        n_ctx=64,
        d_vocab=64,
        attn_only=True,
        normalization_type="LN",
        positional_embedding_type="standard",
        act_fn=None,
        model_name=f"attn-only-{n_layers}l",
    )


# Presets are constructor arguments, not built configs: HookedTransformerConfig derives fields
# (attn_scale from d_head, d_vocab_out from d_vocab, initializer_range from d_model) when it is
# built, so overrides must go in before that or the derived fields go stale.
PRESETS: dict[str, dict[str, Any]] = {
    "attn-only-1l": _attn_only(1, d_model=64, n_heads=4),
    "attn-only-2l": _attn_only(2, d_model=64, n_heads=4),
    "attn-only-4l": _attn_only(4, d_model=128, n_heads=8),
    # seeds/000_blog_emergence_small_transformers.txt: Transformer(layers=4, d_model=256,
    # heads=4), copying task at sequence length 64.
    "blog-4l": dict(
        n_layers=4, d_model=256, n_heads=4, d_head=64, d_mlp=1024, n_ctx=64, d_vocab=64,
        act_fn="gelu", normalization_type="LN", positional_embedding_type="standard",
        model_name="blog-4l",
    ),
}


# TransformerLens' "gpt2" init draws every weight, embeddings included, from N(0, 0.8/sqrt(d_model)),
# while each MLP writes about unit variance per dimension into the residual stream at init. In a
# model with MLPs the token and position signal is then ~8× below the MLP noise after the first LN,
# and induction forms far later (blog-4l at d_model 64 on the copying task: no induction head by step
# 3000, against step ~400 with unit-variance embeddings, which is also ``torch.nn.Embedding``'s
# default). Presets listed here draw W_E and W_pos from N(0, std²) instead.
PRESET_EMBED_INIT_STD: dict[str, float] = {"blog-4l": 1.0}


def preset_embed_init_std(name: str) -> float | None:
    """The embedding init std a preset draws W_E and W_pos with (None: TransformerLens' init)."""
    return PRESET_EMBED_INIT_STD.get(name)


def preset_config(name: str, **overrides: Any) -> HookedTransformerConfig:
    """The ``HookedTransformerConfig`` of a named preset, with optional field overrides."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}'; choose one of: {', '.join(PRESETS)}")
    kwargs = {**PRESETS[name], **overrides}
    if "d_head" not in overrides and ("d_model" in overrides or "n_heads" in overrides):
        kwargs["d_head"] = kwargs["d_model"] // kwargs["n_heads"]
    return config_from_dict(kwargs)


def default_device() -> str:
    """``"cuda"`` when a CUDA device is available, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def build_model(cfg: HookedTransformerConfig | str, *, seed: int | None = None,
                device: str | None = None,
                embed_init_std: float | None = None) -> HookedTransformer:
    """Build a ``HookedTransformer`` from a config or a preset name.

    ``seed`` makes the initial weights reproducible without touching the global RNG state.
    ``embed_init_std`` redraws the token and position embeddings from N(0, std²); a preset name
    brings its own default (``PRESET_EMBED_INIT_STD``).
    """
    if isinstance(cfg, str):
        if embed_init_std is None:
            embed_init_std = preset_embed_init_std(cfg)
        cfg = preset_config(cfg)
    device = device or default_device()
    cfg.device = device
    rng = contextlib.nullcontext() if seed is None else torch.random.fork_rng(devices=[])
    with warnings.catch_warnings(), rng:
        warnings.filterwarnings("ignore", message="HookedTransformer is deprecated",
                                category=DeprecationWarning)
        if seed is not None:
            torch.manual_seed(seed)
        model = HookedTransformer(cfg, move_to_device=False)
        _init_embeddings(model, embed_init_std)
    # TransformerLens' own ``to`` prints to stdout, which would corrupt ``--json`` output.
    return model.to(device, print_details=False)


def _init_embeddings(model: HookedTransformer, std: float | None) -> None:
    if std is None:
        return
    weights = [model.embed.W_E]
    if hasattr(model, "pos_embed"):  # rotary models have no position embedding
        weights.append(model.pos_embed.W_pos)
    with torch.no_grad():
        for weight in weights:
            weight.normal_(0.0, std)


# --- config serialisation ---------------------------------------------------------------------

# Fields that describe where a model happens to live, not what it is.
_RUNTIME_FIELDS = {"device", "n_devices"}
_INIT_FIELDS = {f.name for f in dataclasses.fields(HookedTransformerConfig) if f.init}


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def config_to_dict(cfg: HookedTransformerConfig) -> dict[str, Any]:
    """The config as a JSON-only dict (dtype as a string, numpy scalars as Python numbers)."""
    out = {}
    for name in sorted(_INIT_FIELDS - _RUNTIME_FIELDS):
        value = _jsonable(getattr(cfg, name))
        try:
            json.dumps(value)
        except TypeError:
            continue  # e.g. a tokenizer object some callers attach; not part of the architecture
        out[name] = value
    return out


def config_from_dict(data: Any) -> HookedTransformerConfig:  # Any: parsed JSON, checked below
    """Rebuild a config from ``config_to_dict`` output, or from a TransformerLens ``cfg.to_dict()``.

    Unknown keys are dropped (configs written by other TransformerLens versions carry extras);
    invalid values raise ``ConfigError``.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"a model config must be a JSON object, got {type(data).__name__}")
    kwargs = {}
    for key, value in data.items():
        if key not in _INIT_FIELDS or key in _RUNTIME_FIELDS:
            continue
        if key == "dtype" and isinstance(value, str):
            value = getattr(torch, value.removeprefix("torch."), None)
            if not isinstance(value, torch.dtype):
                raise ConfigError(f"config field dtype: unknown dtype '{data[key]}'")
        elif isinstance(value, np.generic):
            value = value.item()
        kwargs[key] = value
    for required in ("n_layers", "d_model", "n_ctx", "d_head"):
        if required not in kwargs:
            raise ConfigError(f"model config is missing '{required}'")
    try:
        return HookedTransformerConfig(**kwargs)
    except (TypeError, ValueError, AssertionError) as exc:
        raise ConfigError(f"invalid model config: {exc}") from None


def config_summary(cfg: HookedTransformerConfig) -> dict[str, Any]:
    """The handful of fields a person reads first."""
    return {
        "name": cfg.model_name,
        "n_layers": cfg.n_layers,
        "n_heads": cfg.n_heads,
        "d_model": cfg.d_model,
        "d_head": cfg.d_head,
        "d_vocab": cfg.d_vocab,
        "n_ctx": cfg.n_ctx,
        "attn_only": bool(cfg.attn_only),
        "d_mlp": None if cfg.attn_only else cfg.d_mlp,
        "normalization": cfg.normalization_type,
        "positional_embedding": cfg.positional_embedding_type,
    }
