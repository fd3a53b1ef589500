"""The dicts TransformerLens users save around a state_dict.

``torch.save(model.state_dict(), f)`` (what ``transformer_lens.train`` writes) is a bare
state_dict and needs nothing from here. Users also wrap it: the weights under ``state_dict``,
``model_state_dict`` or ``model``, the config under ``cfg`` or ``config`` (``cfg.to_dict()`` or
the ``HookedTransformerConfig`` itself), often beside an optimizer state and a step. The
weights inside may themselves be in another layout (nanoGPT, Hugging Face); then the wrapper's
config is not a TransformerLens config and is not used.
"""

from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any

from transformer_lens import HookedTransformerConfig

from ..errors import CheckpointError

WEIGHT_KEYS = ("state_dict", "model_state_dict", "model")
CONFIG_KEYS = ("cfg", "config")
STEP_KEYS = ("step", "iter_num", "global_step")


@dataclass
class Wrapped:
    """A state_dict found under ``weight_key`` of a wrapper dict, with what else it held."""

    state_dict: dict
    weight_key: str
    config: Any
    config_key: str | None
    step: int | None
    where: str

    def load(self, overrides: dict, device: str | None, layout: Callable[[dict], str | None]) -> Any:
        """The ``LoadedModel``; ``layout`` names the layout of the inner state_dict."""
        from ..checkpoints import (LoadedModel, _check_state_dict, _config_with, _instantiate,
                                   _model_from_state_dict)
        from . import huggingface, nanogpt, strip_prefix

        _check_state_dict(self.state_dict, Path(self.where))
        kind = layout(self.state_dict)
        inside = f"under '{self.weight_key}'"
        if kind == "nanogpt":
            loaded = nanogpt.load_state_dict(strip_prefix(self.state_dict), self.where, overrides,
                                             device)
        elif kind in ("gpt2", "neox", "llama"):
            loaded = huggingface.load_single_file(kind, self.state_dict, Path(self.where),
                                                  overrides, device)
        elif kind is None:
            keys = ", ".join(repr(k) for k in list(self.state_dict)[:3])
            from . import ACCEPTED
            raise CheckpointError(f"{self.where}: a wrapper with weights {inside} (first keys: "
                                  f"{keys}) in no layout the toolkit knows; accepted: {ACCEPTED}")
        elif self.config is None or _not_a_model_config(self.config):
            model, notes = _model_from_state_dict(self.state_dict, overrides, device, self.where)
            if self.config is not None:  # e.g. a training script's hyperparameters
                notes.insert(0, f"'{self.config_key}' holds no model config (no n_layers or "
                                "d_model); the architecture is read off the weights")
            loaded = LoadedModel(model, self.where, "state-dict", notes=notes)
        else:
            cfg = self.config
            if isinstance(cfg, HookedTransformerConfig):
                cfg = cfg.to_dict()
            if not isinstance(cfg, dict):
                raise CheckpointError(f"{self.where}: '{self.config_key}' is a "
                                      f"{type(cfg).__name__}, expected a dict of "
                                      "HookedTransformerConfig fields")
            model = _instantiate(_config_with(cfg, overrides), self.state_dict, device, self.where)
            loaded = LoadedModel(model, self.where, "torch-config")
        if self.weight_key != "state_dict" or kind != "transformerlens":
            what = "TransformerLens" if kind == "transformerlens" else kind
            cfg_note = (f" with its config '{self.config_key}'" if loaded.source == "torch-config"
                        else "")
            loaded.notes.insert(0, f"{what} state_dict {inside}{cfg_note}")
        if loaded.step is None:
            loaded.step = self.step
        return loaded


def unwrap(obj: dict, where: str) -> Wrapped | None:
    """The wrapped state_dict in ``obj``, or None when ``obj`` is not a wrapper."""
    for key in WEIGHT_KEYS:
        inner = obj.get(key)
        if isinstance(inner, dict):
            config_key = next((k for k in CONFIG_KEYS if obj.get(k) is not None), None)
            step = next((obj[k] for k in STEP_KEYS if isinstance(obj.get(k), int)
                         and not isinstance(obj.get(k), bool)), None)
            return Wrapped(inner, key, obj.get(config_key) if config_key else None, config_key,
                           step, where)
    return None


def _not_a_model_config(config: Any) -> bool:
    return isinstance(config, dict) and not {"n_layers", "d_model"} & set(config)
