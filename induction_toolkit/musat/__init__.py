"""Musat et al. 2025: the disentangled two-layer transformer, its 19 pseudo-parameters and emergence.

``docs/musat.md`` explains the model, the task and every choice. Modules:
``task`` (the item–label ICL task), ``model`` (the disentangled transformer, its exact forward and
its ``HookedTransformer`` export), ``basis`` (the 19-value basis, projection, residual, PCA),
``train`` (zero-init gradient descent), ``emergence`` (threshold crossings, order, log-log fit),
``proxies`` (α̃₃ β̃₂ γ̃₃ for ordinary 2-layer models), ``figures``.
"""

from .basis import NAMES, project, pseudo_params, trajectory_pca_dim
from .model import MusatConfig, MusatWeights, forward_logits, to_hooked, zero_weights
from .task import population, sample_batch

__all__ = ["NAMES", "MusatConfig", "MusatWeights", "forward_logits", "population", "project",
           "pseudo_params", "sample_batch", "to_hooked", "trajectory_pca_dim", "zero_weights"]
