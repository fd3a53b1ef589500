"""Pretrained models: local Hugging Face directories and TransformerLens model names, offline.

Both routes end in the same place: a ``HookedTransformerConfig`` from TransformerLens' own
``convert_hf_model_config``, a model built through ``models.build_model``, and the weights
converted by TransformerLens' per-architecture ``convert_*_weights`` (via
``get_pretrained_state_dict``). No weight processing (LayerNorm folding, centering) is applied:
the converted model computes exactly what the Hugging Face model computes, and every score reads
norms itself, so folding would change nothing the toolkit measures.

Nothing here touches the network. Every Hugging Face call runs with ``local_files_only=True``
inside ``offline()``, which also switches huggingface_hub's offline flag on, so a model that is
not on disk fails at once instead of waiting on a connection.
"""

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from transformer_lens import HookedTransformer
from transformers.utils import CONFIG_NAME  # Hugging Face's own name for a model's config file

from .errors import CheckpointError, ModelUnavailableError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

# Files from which a tokenizer can be rebuilt without the network.
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
_WEIGHT_FILES = re.compile(r"^(model|pytorch_model)(-\d+-of-\d+)?\.(safetensors|bin)$|"
                           r"^(model|pytorch_model)\.(safetensors|bin)\.index\.json$")


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """The torch dtype named by ``dtype`` (``float32``, ``float16``, ``bfloat16``; None → float32)."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    key = str(dtype).removeprefix("torch.")
    if key not in DTYPES:
        raise CheckpointError(f"unknown dtype '{dtype}'; use float32, float16 or bfloat16")
    return DTYPES[key]


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """Make every huggingface_hub / transformers call fail fast instead of reaching the network."""
    from huggingface_hub import constants

    saved_env = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                                                "HF_HUB_DISABLE_TELEMETRY")}
    saved_flag = constants.HF_HUB_OFFLINE
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1")
    constants.HF_HUB_OFFLINE = True  # read at call time by huggingface_hub.is_offline_mode()
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved_flag
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No per-load progress bars or info logs from transformers (stderr stays readable)."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    level = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


# --- names ------------------------------------------------------------------------------------

def official_name(name: str) -> str | None:
    """TransformerLens' official model name for ``name`` (an official name or alias), else None."""
    from transformer_lens.loading_from_pretrained import make_model_alias_map

    return make_model_alias_map().get(name.lower())


def is_model_name(name: str) -> bool:
    """True when ``name`` is a TransformerLens official model name or alias."""
    return official_name(name) is not None


def cached_snapshot(repo_id: str, cache_dir: str | Path | None = None) -> Path | None:
    """The local Hugging Face cache snapshot of ``repo_id``, or None when it is not cached."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import EntryNotFoundError, HFValidationError

    try:
        with offline():
            path = snapshot_download(repo_id, local_files_only=True, cache_dir=cache_dir)
    # LocalEntryNotFoundError and OfflineModeIsEnabled are OSErrors: not cached
    except (HFValidationError, EntryNotFoundError, OSError, ValueError):
        return None
    p = Path(path)
    return p if (p / CONFIG_NAME).is_file() else None


def load_named(name: str, *, device: str | None = None, dtype: str | None = None,
               cache_dir: str | Path | None = None) -> tuple[HookedTransformer, list[str]]:
    """Load a TransformerLens model name (or alias) from the local Hugging Face cache."""
    official = official_name(name)
    if official is None:
        raise CheckpointError(f"unknown model '{name}': not a file, a directory, nor a "
                              "TransformerLens model name")
    from transformer_lens.loading_from_pretrained import NEED_REMOTE_CODE_MODELS

    if official.startswith(NEED_REMOTE_CODE_MODELS):
        # TransformerLens would turn on trust_remote_code: Python shipped with the weights
        raise CheckpointError(f"model '{name}' needs code shipped with the model "
                              "(trust_remote_code), which the toolkit never runs")
    if cache_dir is None:
        from huggingface_hub import constants

        # read now, not at import, so HF_HOME / HF_HUB_CACHE set by the caller are honoured
        cache_dir = constants.HF_HUB_CACHE
    snapshot = cached_snapshot(official, cache_dir)
    if snapshot is None:
        raise ModelUnavailableError(f"model '{name}' is not available offline; download it once, "
                                    "or pass a local directory")
    return load_hf_directory(snapshot, device=device, dtype=dtype, tl_name=official,
                             cache_dir=cache_dir)


# --- local directories ------------------------------------------------------------------------

def is_hf_weight_file(path: str | Path) -> bool:
    """True for the names Hugging Face gives weight files (``model.safetensors``, ``pytorch_model.bin``, shards)."""
    return bool(_WEIGHT_FILES.match(Path(path).name))


def is_hf_directory(path: str | Path) -> bool:
    """A directory whose config.json is a Hugging Face model config (not a training run's)."""
    f = Path(path) / CONFIG_NAME
    try:
        data = json.loads(f.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return f.is_file()  # let the loader report what is wrong with it
    return isinstance(data, dict) and ("model_type" in data or "architectures" in data)


def _read_hf_config(p: Path) -> dict[str, Any]:
    try:
        data = json.loads((p / CONFIG_NAME).read_text())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{p / CONFIG_NAME} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{p / CONFIG_NAME} must hold a JSON object")
    return data


def _tl_config(p: Path, hf_cfg: dict[str, Any], tl_name: str | None, dtype: torch.dtype,
               cache_dir: str | Path | None = None):
    """TransformerLens' config for the model in ``p``.

    TransformerLens picks the architecture from the *name* when it contains 'llama' or 'gemma'
    (and then finds no HF config to read sizes from), so a local directory is handed to it as a
    copy of its config.json under a neutral directory name: the architecture always comes from
    ``config.json``'s ``architectures`` field, as Hugging Face itself decides.
    """
    from transformer_lens.loading_from_pretrained import get_pretrained_model_config

    kwargs = {"local_files_only": True}
    try:
        with offline():
            if tl_name is not None:  # TransformerLens' own route for its names
                cfg = get_pretrained_model_config(tl_name, dtype=dtype, fold_ln=False,
                                                  cache_dir=cache_dir, **kwargs)
                return _finish_config(cfg, tl_name)
            with tempfile.TemporaryDirectory(prefix="induct-hf-config-") as tmp:
                neutral = Path(tmp) / "model"
                neutral.mkdir()
                (neutral / CONFIG_NAME).write_text(json.dumps(_compat_hf_config(hf_cfg)))
                cfg = get_pretrained_model_config(str(neutral), dtype=dtype, fold_ln=False,
                                                  **kwargs)
    except NotImplementedError:
        arch = (hf_cfg.get("architectures") or ["?"])[0]
        raise CheckpointError(f"{p}: architecture {arch} is not supported by TransformerLens' "
                              "conversion") from None
    except (KeyError, AttributeError, TypeError, ValueError, OSError) as exc:
        raise CheckpointError(f"{p}: cannot convert its {CONFIG_NAME} to a TransformerLens config "
                              f"({type(exc).__name__}: {_first_line(exc)})") from None
    return _finish_config(cfg, p.name)


def tl_config(where: str | Path, hf_cfg: dict[str, Any],
              dtype: torch.dtype = torch.float32):
    """TransformerLens' ``HookedTransformerConfig`` for a Hugging Face config dict (no name guessing)."""
    return _tl_config(Path(where), hf_cfg, None, dtype)


def _compat_hf_config(hf_cfg: dict[str, Any]) -> dict[str, Any]:
    """Fields TransformerLens 3.9 reads that transformers 5 no longer writes."""
    out = dict(hf_cfg)
    if out.get("model_type") == "gpt2" and "n_ctx" not in out and "n_positions" in out:
        out["n_ctx"] = out["n_positions"]  # GPT2Config dropped n_ctx; TL reads it for n_ctx
    return out


def _finish_config(cfg, name: str):
    cfg.model_name = name.split("/")[-1]
    # a tokenizer name would make HookedTransformer fetch a tokenizer; we attach a local one
    cfg.tokenizer_name = None
    return cfg


def load_hf_directory(path: str | Path, *, device: str | None = None, dtype: str | None = None,
                      tl_name: str | None = None,
                      cache_dir: str | Path | None = None) -> tuple[HookedTransformer, list[str]]:
    """Convert the Hugging Face causal LM saved in ``path`` into a ``HookedTransformer``."""
    from transformers import AutoModelForCausalLM

    p = Path(path)
    hf_cfg = _read_hf_config(p)
    if not any(_WEIGHT_FILES.match(f.name) for f in p.iterdir()):
        raise CheckpointError(f"{p} has a {CONFIG_NAME} but no weights (model.safetensors or "
                              "pytorch_model.bin)")
    torch_dtype = parse_dtype(dtype)
    cfg = _tl_config(p, hf_cfg, tl_name, torch_dtype, cache_dir)
    notes: list[str] = []
    try:
        with offline(), _quiet_transformers():
            hf_model = AutoModelForCausalLM.from_pretrained(
                str(p), local_files_only=True, dtype=torch_dtype, low_cpu_mem_usage=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{p}: Hugging Face could not load the model "
                              f"({_first_line(exc)})") from None
    model = hooked_from_hf(hf_model, cfg, str(p), device=device, dtype=torch_dtype)
    tokenizer = _local_tokenizer(p)
    if tokenizer is not None:
        model.tokenizer = tokenizer
    else:
        notes.append("no tokenizer files next to the model: scoring without a BOS token")
    return model, notes


def hooked_from_hf(hf_model: Any, cfg: Any, where: str, *, device: str | None = None,
                   dtype: torch.dtype = torch.float32) -> HookedTransformer:
    """Convert a loaded Hugging Face causal LM with TransformerLens' own ``convert_*_weights``.

    ``cfg`` is TransformerLens' config for it (``tl_config``); no weight processing is applied.
    """
    from transformer_lens.loading_from_pretrained import get_pretrained_state_dict

    from .models import build_model, default_device

    hf_model.eval()
    try:
        with offline():
            state_dict = get_pretrained_state_dict(where, cfg, hf_model=hf_model, dtype=dtype)
    except (KeyError, AttributeError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{where}: TransformerLens could not convert the weights "
                              f"({type(exc).__name__}: {_first_line(exc)})") from None
    del hf_model
    dev = device or default_device()
    model = build_model(cfg, device="cpu")
    try:
        model.load_and_process_state_dict(state_dict, fold_ln=False,
                                          center_writing_weights=False, center_unembed=False,
                                          fold_value_biases=False,
                                          refactor_factored_attn_matrices=False)
    except (RuntimeError, KeyError) as exc:  # e.g. a head_dim TransformerLens' config ignores
        raise CheckpointError(f"{where}: the converted weights do not fit TransformerLens' config "
                              f"for this architecture ({_first_line(exc)})") from None
    del state_dict
    if dev != "cpu":
        model = model.to(dev, print_details=False)
    return model.eval()


def _local_tokenizer(p: Path):
    if not any((p / f).is_file() for f in _TOKENIZER_FILES):
        return None
    from transformers import AutoTokenizer

    try:
        with offline():
            return AutoTokenizer.from_pretrained(str(p), local_files_only=True)
    except Exception:  # a broken tokenizer only costs the BOS token; the model still loads
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
