"""Saving and loading models without ever executing code from a file.

The toolkit's own format is one safetensors file: the weights plus, as string metadata, the full
``HookedTransformerConfig`` (JSON), the task config, step, seed and library version. ``load_model``
is the one entry point every command uses. Besides our own files it reads:

- torch files holding ``{"config": ..., "state_dict": ...}`` as TransformerLens users write them,
  through ``torch.load(weights_only=True)`` with an allow-list of exactly the data types such
  configs contain (numpy scalars and dtypes, and TransformerLens' config dataclass);
- bare TransformerLens state_dicts (torch or safetensors), whose architecture is inferred from
  tensor names and shapes (``config=`` supplies or overrides fields);
- run directories (their latest checkpoint, or ``step=``);
- checkpoints of other projects (nanoGPT, Hugging Face single files, wrapped TransformerLens
  state_dicts), recognised and converted by ``checkpoint_formats`` after the same safe load.
"""

import contextlib
import dataclasses
import json
import pickle
import re
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as st_load_file
from safetensors.torch import save as st_save_bytes
from transformer_lens import HookedRootModule, HookedTransformer, HookedTransformerConfig
from transformers.utils import CONFIG_NAME as HF_CONFIG_NAME

from . import __version__
from .atomic import atomic_write_bytes
from .errors import CheckpointError, ConfigError
from .models import build_model, config_from_dict, config_to_dict
from .run_dir import CHECKPOINT_DIR, is_run_dir, run_checkpoint
from .run_dir import list_checkpoints  # noqa: F401  (re-exported for older callers)

FORMAT_NAME = "induction-toolkit"
REDDY_FORMAT_NAME = "induction-toolkit-reddy"  # Reddy's network (reddy/train.py writes it)
FORMAT_VERSION = "1"
META_FORMAT = "format"
META_FORMAT_VERSION = "format_version"
META_TOOLKIT_VERSION = "toolkit_version"
META_CONFIG = "config"
META_TASK = "task"
META_STEP = "step"
META_SEED = "seed"
META_EXTRA = "extra"

# Every field name a HookedTransformerConfig has (what a --config file may set).
_CONFIG_FIELDS = frozenset(f.name for f in dataclasses.fields(HookedTransformerConfig))

# Buffers TransformerLens rebuilds from the config; a state_dict may or may not carry them.
_DERIVED_BUFFERS = re.compile(r"(\.IGNORE|\.mask|\.rotary_sin|\.rotary_cos)$")

# Exactly the non-tensor types that TransformerLens config dicts contain when pickled.
_SAFE_GLOBALS = [
    np.dtype,
    # numpy scalars pickle as a call to numpy's scalar reconstructor; its module moved in NumPy 2
    # (numpy.core → numpy._core), so take it from the public pickle protocol instead of a path
    np.float64(0).__reduce__()[0],
    *[getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")],
    HookedTransformerConfig,
]


@dataclass
class LoadedModel:
    """A model plus what its file said about how it was made."""

    model: HookedRootModule  # a HookedTransformer, or a task's hookable network (Reddy's)
    path: str
    source: str  # toolkit | torch-config | state-dict | run | nanogpt | hf-file | hf | pretrained
    task: dict | None = None
    step: int | None = None
    seed: int | None = None
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @property
    def bos_token_id(self) -> int | None:
        """The BOS id the model was trained with (task config), else its tokenizer's, else None."""
        if self.task and self.task.get("bos_token_id") is not None:
            return int(self.task["bos_token_id"])
        tokenizer = getattr(self.model, "tokenizer", None)
        if tokenizer is not None and self.model.cfg.default_prepend_bos:
            return getattr(tokenizer, "bos_token_id", None)
        return None

    @property
    def special_token_ids(self) -> tuple[int, ...]:
        """Token ids never drawn as random content (the tokenizer's special tokens)."""
        tokenizer = getattr(self.model, "tokenizer", None)
        ids = getattr(tokenizer, "all_special_ids", None) or ()
        return tuple(sorted({int(i) for i in ids if 0 <= int(i) < self.model.cfg.d_vocab}))


def save_model(model: HookedTransformer, path: str | Path, *, task: dict | None = None,
               step: int | None = None, seed: int | None = None,
               extra: dict | None = None) -> Path:
    """Write ``model`` as one safetensors file with its full config, atomically."""
    tensors = {k.removeprefix("_orig_mod."): v.detach().to("cpu").contiguous().clone()
               for k, v in model.state_dict().items()}
    metadata = {
        META_FORMAT: FORMAT_NAME,
        META_FORMAT_VERSION: FORMAT_VERSION,
        META_TOOLKIT_VERSION: __version__,
        META_CONFIG: json.dumps(config_to_dict(model.cfg)),
    }
    if task is not None:
        metadata[META_TASK] = json.dumps(task)
    if step is not None:
        metadata[META_STEP] = str(int(step))
    if seed is not None:
        metadata[META_SEED] = str(int(seed))
    if extra:
        metadata[META_EXTRA] = json.dumps(extra)
    return atomic_write_bytes(path, st_save_bytes(tensors, metadata=metadata))


def load_model(path: str | Path, *, config: dict | str | Path | None = None,
               device: str | None = None, step: int | None = None,
               dtype: str | None = None, n_heads: int | None = None) -> LoadedModel:
    """Load any model the toolkit accepts; never executes code from the file.

    ``config`` (a dict or a JSON file) supplies or overrides config fields; ``step`` picks a
    checkpoint of a run directory; ``dtype`` (e.g. ``"bfloat16"``) casts the weights;
    ``n_heads`` is the head count of a layout that does not show it (docs/checkpoints.md).
    """
    overrides = with_n_heads(config, n_heads)
    p = Path(path)
    if p.is_dir():
        loaded = _load_directory(p, overrides, device, step, dtype)
    elif p.exists():
        loaded = _load_file(p, overrides, device)
    else:
        loaded = _load_missing(str(path), overrides, device, dtype)
    if dtype is not None and loaded.source not in ("hf", "pretrained"):
        target = getattr(torch, dtype, None)
        if not isinstance(target, torch.dtype):
            raise CheckpointError(f"unknown dtype '{dtype}'; use float32, float16 or bfloat16")
        loaded.model = loaded.model.to(target, print_details=False)
    return loaded


def with_n_heads(config: dict | str | Path | None, n_heads: int | None) -> dict:
    """The config overrides of ``config`` (a dict or JSON file) plus ``n_heads`` when given."""
    overrides = _read_config_override(config)
    if n_heads is not None:
        if n_heads < 1:
            raise CheckpointError(f"--n-heads must be ≥ 1, got {n_heads}")
        overrides["n_heads"] = int(n_heads)
    return overrides


# --- dispatch ---------------------------------------------------------------------------------

def _load_missing(name: str, overrides: dict, device: str | None,
                  dtype: str | None) -> LoadedModel:
    from . import pretrained

    if pretrained.is_model_name(name):
        model, notes = pretrained.load_named(name, device=device, dtype=dtype)
        return LoadedModel(model, name, "pretrained", notes=notes)
    raise CheckpointError(f"no such file or directory: {name}" if _looks_like_path(name) else
                          f"unknown model '{name}': not a file, a directory, nor a "
                          "TransformerLens model name")


def _looks_like_path(name: str) -> bool:
    return "/" in name or "\\" in name or bool(Path(name).suffix)


def _load_directory(p: Path, overrides: dict, device: str | None, step: int | None,
                    dtype: str | None) -> LoadedModel:
    if is_run_dir(p):
        ckpt = run_checkpoint(p, step)
        loaded = _load_file(ckpt, overrides, device)
        loaded.source = "run"
        return loaded
    if (p / HF_CONFIG_NAME).is_file():
        from . import pretrained

        if not pretrained.is_hf_directory(p):
            raise CheckpointError(f"{p} has a {HF_CONFIG_NAME} but is neither a training run (no "
                                  f"'{CHECKPOINT_DIR}/' yet) nor a Hugging Face model "
                                  f"(no model_type in {HF_CONFIG_NAME})")
        model, notes = pretrained.load_hf_directory(p, device=device, dtype=dtype)
        return LoadedModel(model, str(p), "hf", notes=notes)
    raise CheckpointError(f"{p} is a directory but not a training run (no '{CHECKPOINT_DIR}/')"
                          f" nor a Hugging Face model directory (no {HF_CONFIG_NAME}); pass a "
                          "checkpoint file or a run directory")


def _load_file(p: Path, overrides: dict, device: str | None) -> LoadedModel:
    try:
        with open(p, "rb") as fh:
            head = fh.read(9)
    except OSError as exc:
        raise CheckpointError(f"cannot read {p}: {exc.strerror}") from None
    if not head:
        raise CheckpointError(f"{p} is empty; it holds no model (was the save interrupted?)")
    # safetensors first: its 8-byte header length can start with 0x80 (any length ≡ 128 mod 256),
    # which also opens a pickle; a torch file never has '{' right after 8 bytes (zip: the
    # compression method; pickle: the protocol and torch's magic number)
    if len(head) == 9 and head[8:9] == b"{":
        return _load_safetensors(p, overrides, device)
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        return _load_torch(p, overrides, device)
    raise CheckpointError(f"{p} is not a model file: neither safetensors nor a torch checkpoint")


def _load_safetensors(p: Path, overrides: dict, device: str | None) -> LoadedModel:
    # Only the header is read here; the tensors come straight from the file (no bytes copy).
    try:
        with open(p, "rb") as fh:
            (header_len,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(header_len))
        tensors = st_load_file(p)
    except (SafetensorError, ValueError, struct.error, UnicodeDecodeError, OSError) as exc:
        raise CheckpointError(f"{p} is a damaged or truncated safetensors file ({_first_line(exc)});"
                              " re-save it or pick another checkpoint") from None
    meta = header.get("__metadata__") or {}
    if meta.get(META_FORMAT) == REDDY_FORMAT_NAME:  # its data world lives in the run's config
        raise CheckpointError(f"{p} is a checkpoint of Reddy's network (vector inputs, one label per "
                              "sequence): pass its run directory to induct score, ablate, patch, "
                              "weights or report (docs/reddy.md); other commands read token models")
    if meta.get(META_FORMAT) != FORMAT_NAME:
        from .checkpoint_formats import load_foreign

        foreign = load_foreign(tensors, p, overrides, device)
        if foreign is not None:
            return foreign
        model, notes = _model_from_state_dict(tensors, overrides, device, str(p))
        return LoadedModel(model, str(p), "state-dict", notes=notes)
    try:
        cfg_dict = json.loads(meta[META_CONFIG])
        task = json.loads(meta[META_TASK]) if META_TASK in meta else None
        extra = json.loads(meta[META_EXTRA]) if META_EXTRA in meta else {}
        step = int(meta[META_STEP]) if META_STEP in meta else None
        seed = int(meta[META_SEED]) if META_SEED in meta else None
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{p} has damaged toolkit metadata ({exc}); re-save it") from None
    cfg = _config_with(cfg_dict, overrides)
    model = _instantiate(cfg, tensors, device, str(p))
    return LoadedModel(model, str(p), "toolkit", task=task, step=step, seed=seed, extra=extra)


def _load_torch(p: Path, overrides: dict, device: str | None) -> LoadedModel:
    try:
        # A path is memory-mapped, so tensors the model does not use (an optimizer's state) stay
        # on disk; but torch >= 2.13 hands any *.safetensors path to safetensors whatever the bytes
        # say (a torch file so named failed with an uncaught SafetensorError), so such a name is
        # read from a file object instead.
        mapped = zipfile.is_zipfile(p) and p.suffix != ".safetensors"
        with torch.serialization.safe_globals(_SAFE_GLOBALS), \
                (contextlib.nullcontext(p) if mapped else open(p, "rb")) as src:
            obj = torch.load(src, map_location="cpu", weights_only=True, mmap=mapped)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{p} contains pickled objects outside the safe allow-list "
            f"({_unsafe_globals_hint(exc)}); it was not loaded because unpickling it could run "
            "code. Re-save only tensors and plain config values, e.g. torch.save({'config': "
            "cfg.to_dict(), 'state_dict': model.state_dict()}), or use safetensors") from None
    except Exception as exc:  # noqa: BLE001  damaged bytes: torch's unpickler raises anything
        # (RuntimeError, EOFError, zipfile.BadZipFile, but also IndexError, TypeError, …)
        raise CheckpointError(f"{p} is a damaged or truncated torch file ({_first_line(exc)}); "
                              "re-save it or pick another checkpoint") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{p} holds a {type(obj).__name__}, not a dict; expected a "
                              "state_dict or {'config': ..., 'state_dict': ...}")
    loaded = _from_torch_dict(obj, p, overrides, device)
    del obj  # everything the model did not take (an optimizer state) goes here
    for t in [*loaded.model.parameters(), *loaded.model.buffers()]:
        if t.device.type == "cpu":  # own the memory instead of keeping the file mapped
            t.data = t.data.clone()
    return loaded


def _from_torch_dict(obj: dict, p: Path, overrides: dict, device: str | None) -> LoadedModel:
    from .checkpoint_formats import load_foreign

    foreign = load_foreign(obj, p, overrides, device)
    if foreign is not None:
        return foreign
    if "state_dict" in obj:  # a wrapper whose weights are not a dict (dicts are unwrapped above)
        _check_state_dict(obj["state_dict"], p)
    _check_state_dict(obj, p)
    model, notes = _model_from_state_dict(obj, overrides, device, str(p))
    return LoadedModel(model, str(p), "state-dict", notes=notes)


# --- building a model from tensors ------------------------------------------------------------

def _check_state_dict(sd: Any, p: Path) -> None:
    if not isinstance(sd, dict) or not sd:
        raise CheckpointError(f"{p}: the state_dict is {'empty' if isinstance(sd, dict) else 'a ' + type(sd).__name__}; expected a dict of tensors")
    bad = [k for k, v in sd.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{p}: state_dict entry {bad[0]!r} is not a named tensor")


def _config_with(cfg_dict: dict, overrides: dict) -> HookedTransformerConfig:
    _check_override_fields(overrides)
    try:
        return config_from_dict({**cfg_dict, **overrides})
    except ConfigError as exc:
        raise CheckpointError(f"{exc}; fix it with --config cfg.json") from None


def _instantiate(cfg: HookedTransformerConfig, state_dict: dict[str, torch.Tensor],
                 device: str | None, where: str) -> HookedTransformer:
    state_dict = {k.removeprefix("_orig_mod."): v for k, v in state_dict.items()}
    # Every parameter comes from the file: skip drawing random weights (its allocation is never
    # touched, so it costs no memory), then adopt the file's tensors instead of copying them.
    init_weights, cfg.init_weights = cfg.init_weights, False
    try:
        model = build_model(cfg, device="cpu")
    finally:
        cfg.init_weights = init_weights
    expected = model.state_dict()
    unexpected = sorted(set(state_dict) - set(expected))
    missing = sorted(k for k in set(expected) - set(state_dict) if not _DERIVED_BUFFERS.search(k))
    if unexpected or missing:
        parts = []
        if missing:
            parts.append(f"missing {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected {_few(unexpected)}")
        raise CheckpointError(f"{where}: weights do not match the model config ({'; '.join(parts)});"
                              " pass the right config with --config cfg.json")
    for k, v in state_dict.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise CheckpointError(
                f"{where}: tensor '{k}' has shape {tuple(v.shape)} but the config needs "
                f"{tuple(expected[k].shape)}; the state_dict's shapes contradict each other or the "
                "config (fix with --config cfg.json)")
        if not (v.is_floating_point() or v.dtype == expected[k].dtype):
            raise CheckpointError(f"{where}: tensor '{k}' has dtype {v.dtype}, expected floats")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state_dict.items()},
                          strict=False, assign=True)
    dev = device or _auto_device()
    return model.to(dev, print_details=False) if dev != "cpu" else model


def _auto_device() -> str:
    from .models import default_device
    return default_device()


_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.(.+)$")


def infer_config(state_dict: dict[str, torch.Tensor]) -> tuple[dict, list[str]]:
    """Infer HookedTransformerConfig fields from TransformerLens tensor names and shapes.

    Returns ``(fields, notes)``. Raises ``CheckpointError`` when shapes contradict each other.
    """
    sd = {k.removeprefix("_orig_mod."): v for k, v in state_dict.items()}
    notes: list[str] = []

    def shape(key: str) -> tuple[int, ...]:
        return tuple(sd[key].shape)

    if "embed.W_E" not in sd:
        raise CheckpointError("cannot infer the architecture: no 'embed.W_E' tensor (is this a "
                              "TransformerLens state_dict?); pass --config cfg.json")
    if len(shape("embed.W_E")) != 2:
        raise CheckpointError(f"'embed.W_E' should be 2-D [d_vocab, d_model], got {shape('embed.W_E')}")
    d_vocab, d_model = shape("embed.W_E")
    layers = sorted({int(m.group(1)) for k in sd if (m := _BLOCK_KEY.match(k))})
    if not layers:
        raise CheckpointError("cannot infer the architecture: no 'blocks.N.*' tensors")
    if layers != list(range(len(layers))):
        raise CheckpointError(f"blocks are not numbered 0..n-1 (found {layers})")
    n_layers = len(layers)

    def need(key: str) -> tuple[int, ...]:
        if key not in sd:
            raise CheckpointError(f"cannot infer the architecture: '{key}' is missing")
        return shape(key)

    def contradiction(key: str, got: Any, want: Any, what: str) -> CheckpointError:
        return CheckpointError(f"state_dict shapes contradict each other: '{key}' implies {what}={got}"
                               f" but 'embed.W_E' and block 0 imply {what}={want}")

    gqa = "blocks.0.attn._W_K" in sd
    kname = "_W_K" if gqa else "W_K"
    vname = "_W_V" if gqa else "W_V"
    q = need("blocks.0.attn.W_Q")
    if len(q) != 3:
        raise CheckpointError(f"'blocks.0.attn.W_Q' should be 3-D [n_heads, d_model, d_head], got {q}")
    n_heads, _, d_head = q
    n_kv = need(f"blocks.0.attn.{kname}")[0]
    fields: dict[str, Any] = {"n_layers": n_layers, "d_model": d_model, "n_heads": n_heads,
                              "d_head": d_head, "d_vocab": d_vocab}
    if gqa:
        fields["n_key_value_heads"] = n_kv
    has_mlp = "blocks.0.mlp.W_in" in sd
    d_mlp = need("blocks.0.mlp.W_in")[1] if has_mlp else None
    for layer in range(n_layers):
        b = f"blocks.{layer}"
        checks = {
            f"{b}.attn.W_Q": ((n_heads, d_model, d_head), "n_heads, d_model, d_head"),
            f"{b}.attn.{kname}": ((n_kv, d_model, d_head), "n_heads, d_model, d_head"),
            f"{b}.attn.{vname}": ((n_kv, d_model, d_head), "n_heads, d_model, d_head"),
            f"{b}.attn.W_O": ((n_heads, d_head, d_model), "n_heads, d_head, d_model"),
        }
        if has_mlp:
            checks[f"{b}.mlp.W_in"] = ((d_model, d_mlp), "d_model, d_mlp")
            checks[f"{b}.mlp.W_out"] = ((d_mlp, d_model), "d_mlp, d_model")
        for key, (want, what) in checks.items():
            got = need(key)
            if got != want:
                raise contradiction(key, got, want, f"({what})")
        if (f"{b}.mlp.W_in" in sd) != has_mlp:
            raise CheckpointError(f"state_dict shapes contradict each other: block {layer} "
                                  f"{'has' if not has_mlp else 'lacks'} an MLP but block 0 does not")
    if has_mlp:
        fields["attn_only"] = False
        fields["d_mlp"] = d_mlp
        fields["gated_mlp"] = "blocks.0.mlp.W_gate" in sd
        fields["act_fn"] = "gelu"
        notes.append("act_fn: the activation function cannot be read off the weights; assumed "
                     "'gelu' (override with --config)")
    else:
        fields["attn_only"] = True
    if "pos_embed.W_pos" in sd:
        n_ctx, dm = shape("pos_embed.W_pos")
        if dm != d_model:
            raise contradiction("pos_embed.W_pos", dm, d_model, "d_model")
        fields["positional_embedding_type"] = "standard"
    elif "blocks.0.attn.rotary_sin" in sd:
        n_ctx, rot = shape("blocks.0.attn.rotary_sin")
        fields["positional_embedding_type"] = "rotary"
        fields["rotary_dim"] = rot
    elif "blocks.0.attn.mask" in sd:
        n_ctx = shape("blocks.0.attn.mask")[0]
        fields["positional_embedding_type"] = "rotary"
        fields["rotary_dim"] = d_head
        notes.append("positional_embedding_type: no positional embedding tensor; assumed rotary "
                     "positions (override with --config)")
    else:
        raise CheckpointError("cannot infer the context length: no 'pos_embed.W_pos' and no "
                              "attention mask buffer; pass --config cfg.json with n_ctx")
    fields["n_ctx"] = n_ctx
    if "blocks.0.ln1.w" in sd:
        fields["normalization_type"] = "LN" if "blocks.0.ln1.b" in sd else "RMS"
    else:
        fields["normalization_type"] = None
        notes.append("normalization_type: no LayerNorm weights; assumed no normalisation (if "
                     "LayerNorm was folded in, pass --config with normalization_type LNPre)")
    if "unembed.W_U" in sd:
        dm, d_vocab_out = shape("unembed.W_U")
        if dm != d_model:
            raise contradiction("unembed.W_U", dm, d_model, "d_model")
        fields["d_vocab_out"] = d_vocab_out
    return fields, notes


def _model_from_state_dict(sd: dict[str, torch.Tensor], overrides: dict, device: str | None,
                           where: str) -> tuple[HookedTransformer, list[str]]:
    try:
        fields, notes = infer_config(sd)
    except CheckpointError as exc:
        if not overrides:
            raise CheckpointError(f"{where}: {exc}") from None
        fields, notes = {}, []
    _check_override_fields(overrides)
    fields.update(overrides)
    # each note names the field it guessed; a field the user supplied needs no note
    notes = [n for n in notes if n.split(":", 1)[0] not in overrides]
    cfg = _config_with(fields, {})
    return _instantiate(cfg, sd, device, where), notes


# --- small helpers ----------------------------------------------------------------------------

def _read_config_override(config: dict | str | Path | None) -> dict:
    if config is None:
        return {}
    if isinstance(config, dict):
        return dict(config)
    p = Path(config)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"config file not found: {p}") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"config file {p} is not valid JSON ({_first_line(exc)})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"config file {p} must hold a JSON object of config fields")
    return data


def _check_override_fields(overrides: dict) -> None:
    # Overrides someone wrote by hand: a misspelt field would otherwise be dropped without a word.
    # Checked where they become a HookedTransformerConfig, not when read: for a Hugging Face file
    # they are fields of its own config class, which checkpoint_formats checks.
    unknown = sorted(k for k in overrides if k not in _CONFIG_FIELDS)
    if unknown:
        raise CheckpointError(f"--config: unknown field(s) {', '.join(map(repr, unknown))}"
                              " (not HookedTransformerConfig fields)")


def _unsafe_globals_hint(exc: Exception) -> str:
    m = re.search(r"GLOBAL ([\w.]+)", str(exc)) or re.search(r"global ([\w.]+)", str(exc))
    return f"found {m.group(1)}" if m else _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _few(names: list[str], n: int = 3) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")
