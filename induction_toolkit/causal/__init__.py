"""Causal evidence for circuits: ablation, exact / path / attribution patching of attention heads.

Every method takes any hookable TransformerLens-style model (``blocks.{l}.attn.hook_z``) and a
per-sequence metric (``data.SequenceMetric``); exact methods batch their patches (``batched.py``).
"""

from .ablation import ABLATION_METHODS, AblationMetrics, AblationResult, ablate_heads, ablate_heads_on
from .attribution import attribute_heads
from .data import (METRIC_KINDS, NextTokenLogit, NextTokenLogProb, PromptPair, causal_task, first_half_query_positions,
                   last_copy_query_positions, make_prompt_pair, repeated_query_positions)
from .heads import HeadSpecError, parse_head, parse_heads, parse_path
from .patching import patch_heads
from .path_patching import PathPatchingResult, path_patch
from .result import PatchingResult

__all__ = [
    "ABLATION_METHODS", "METRIC_KINDS", "NextTokenLogit", "AblationMetrics", "AblationResult", "HeadSpecError", "NextTokenLogProb", "PatchingResult",
    "PathPatchingResult", "PromptPair", "ablate_heads", "ablate_heads_on", "attribute_heads", "causal_task",
    "first_half_query_positions", "last_copy_query_positions", "make_prompt_pair", "parse_head",
    "parse_heads", "parse_path", "patch_heads", "path_patch", "repeated_query_positions",
]
