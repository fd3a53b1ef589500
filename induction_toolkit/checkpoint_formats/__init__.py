"""Checkpoints written by other projects, recognised by their keys and converted to TransformerLens.

``checkpoints.load_model`` reads every file through its one safe loader (safetensors, or
``torch.load(weights_only=True)`` with an allow-list) and hands the resulting dict to
:func:`load_foreign`. That recognises, in order:

- a nanoGPT ``train.py`` checkpoint (``model`` + ``model_args``, ``iter_num`` …) → ``nanogpt``;
- a wrapper that keeps the weights under ``state_dict``, ``model_state_dict`` or ``model`` and
  possibly a TransformerLens config under ``cfg`` / ``config`` → ``transformerlens``;
- a bare state_dict in nanoGPT's or Hugging Face's GPT-2, GPT-NeoX or Llama layout.

A bare TransformerLens state_dict is not foreign: :func:`load_foreign` returns None and the
loader's own path infers it. Every format is listed in docs/checkpoints.md.
"""

from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from . import huggingface, nanogpt, transformerlens

# What each recognisable layout looks like, for the error that names none of them.
ACCEPTED = ("TransformerLens (embed.W_E, blocks.N.attn.W_Q), nanoGPT (transformer.wte.weight, "
            "transformer.h.N.attn.c_attn.weight), Hugging Face GPT-2 (transformer.wte.weight, "
            "Conv1D c_attn), GPT-NeoX (gpt_neox.embed_in.weight) or Llama "
            "(model.embed_tokens.weight)")


def strip_prefix(state_dict: dict) -> dict:
    """``torch.compile`` saves keys as ``_orig_mod.<name>``; the layouts below use the plain names."""
    return {(k.removeprefix("_orig_mod.") if isinstance(k, str) else k): v
            for k, v in state_dict.items()}


def layout(state_dict: dict) -> str | None:
    """The name of the layout of a dict of tensors: transformerlens, nanogpt, gpt2, neox, llama."""
    sd = strip_prefix(state_dict)
    if "embed.W_E" in sd:
        return "transformerlens"
    if nanogpt.is_nanogpt(sd):
        return "nanogpt"
    return huggingface.hf_layout(sd)


def load_foreign(obj: dict, path: Path, overrides: dict, device: str | None) -> Any:
    """A ``LoadedModel`` for a checkpoint in another project's format, or None for our own ones."""
    where = str(path)
    if nanogpt.is_train_checkpoint(obj):
        return nanogpt.load_train_checkpoint(obj, where, overrides, device)
    wrapped = transformerlens.unwrap(obj, where)
    if wrapped is not None:
        return wrapped.load(overrides, device, layout)
    if not obj or not all(isinstance(k, str) for k in obj):
        return None  # the loader reports an empty or malformed dict itself
    kind = layout(obj)
    if kind == "transformerlens":
        return None
    if kind == "nanogpt":
        return nanogpt.load_state_dict(strip_prefix(obj), where, overrides, device)
    if kind is not None:
        return huggingface.load_single_file(kind, obj, path, overrides, device)
    if all(hasattr(v, "shape") for v in obj.values()):
        keys = ", ".join(repr(k) for k in list(obj)[:3])
        raise CheckpointError(f"{where}: a dict of {len(obj)} tensors in no layout the toolkit "
                              f"knows (first keys: {keys}); accepted: {ACCEPTED}. See "
                              "docs/checkpoints.md")
    return None
