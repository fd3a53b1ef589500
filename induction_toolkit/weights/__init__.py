"""Weight views: circuits read off the weights alone (Musat et al. block view, OV, composition).

- ``analyze_weights(model)`` → ``WeightAnalysis``: per-head sub-diagonal score of the
  position–position QK block, OV eigenvalue copying score, Q/K/V composition scores minus a random
  baseline, virtual K-composition blocks; ``.to_dict()`` is ``induct weights --json``.
- ``layer_figure`` / ``head_figure`` return matplotlib Figures; ``write_weight_figures`` writes one
  PNG per layer and a self-contained HTML page.
- ``circuits`` and ``composition`` hold the matrix functions themselves.

Orientation everywhere: rows are queries, columns keys.
"""

from .analysis import WeightAnalysis, analyze_weights
from .circuits import (diagonal_score, folded_copy, ov_block, qk_blocks, subdiagonal_score,
                       virtual_k_block)
from .composition import BASELINE_SAMPLES, composition_scores, random_baseline

__all__ = [
    "BASELINE_SAMPLES", "WeightAnalysis", "analyze_weights", "composition_scores", "diagonal_score",
    "folded_copy", "ov_block", "qk_blocks", "random_baseline", "subdiagonal_score", "virtual_k_block",
]
