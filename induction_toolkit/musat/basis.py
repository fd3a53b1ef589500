"""The 19-value basis of the disentangled transformer's weights, projection, residual and PCA.

Blocks (``h⁰ = [x; p]``, ``h¹ = [x; p; a¹x; a¹p]``, ``h² = [h¹; a²x; a²p; a²a¹x; a²a¹p]``):

- ``α`` (3, ``W1``): ``α₁ I`` on (x, x); ``α₂ I + α₃ S`` on (p, p), ``S`` the sub-diagonal shift
  (query ``i``, key ``i − 1``): ``α₃`` is layer 1's attention to the previous position.
- ``β`` (12, ``W2``): ``β₁..β₄ I`` on the content blocks (x,x), (x,a¹x), (a¹x,x), (a¹x,a¹x)
  (``β₂``: the query's item matches the item layer 1 moved into a key: token matching);
  ``β₅..β₁₂``: ``I`` and ``S`` coefficients of the position blocks (p,p), (p,a¹p), (a¹p,p), (a¹p,a¹p).
- ``γ`` (4, ``W3``): ``γ₁..γ₄ I`` reading x, a¹x, a²x, a²a¹x (``γ₃``: copying the attended label).

Everything else (content–position cross blocks, content blocks off ``I``, the read-out of
positions, position-block entries off ``I`` and ``S``) is the residual. With isotropic or
signed-orthonormal items the content and cross parts of the residual are 0 under the population
loss by symmetry (``symmetry_residual``); the position blocks are not forced onto ``I`` and ``S``
by any symmetry of a causal model with absolute positions (``docs/musat.md``).
"""

import numpy as np
import torch
from jaxtyping import Float

from .model import MusatConfig, MusatWeights

NAMES = ([f"alpha{i}" for i in range(1, 4)] + [f"beta{i}" for i in range(1, 13)]
         + [f"gamma{i}" for i in range(1, 5)])


def _slots(cfg: MusatConfig) -> dict[str, tuple[int, int]]:
    d, d0 = cfg.d_item, cfg.d0
    return {"x": (0, d), "p": (d, d0), "a1x": (d0, d0 + d), "a1p": (d0 + d, 2 * d0),
            "a2x": (2 * d0, 2 * d0 + d), "a2a1x": (3 * d0, 3 * d0 + d)}


def _components(cfg: MusatConfig) -> list[tuple[str, int, str, str, str]]:
    """(name, matrix index, row slot, column slot, pattern) for each basis element."""
    comps = [("alpha1", 0, "x", "x", "I"), ("alpha2", 0, "p", "p", "I"), ("alpha3", 0, "p", "p", "S")]
    content = [("x", "x"), ("x", "a1x"), ("a1x", "x"), ("a1x", "a1x")]
    comps += [(f"beta{i + 1}", 1, r, c, "I") for i, (r, c) in enumerate(content)]
    pos = [("p", "p"), ("p", "a1p"), ("a1p", "p"), ("a1p", "a1p")]
    for i, (r, c) in enumerate(pos):
        comps += [(f"beta{5 + 2 * i}", 1, r, c, "I"), (f"beta{6 + 2 * i}", 1, r, c, "S")]
    comps += [(f"gamma{i + 1}", 2, "x", c, "I") for i, c in enumerate(["x", "a1x", "a2x", "a2a1x"])]
    return comps


def _pattern(kind: str, n: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.eye(n, dtype=dtype) if kind == "I" else torch.eye(n, dtype=dtype).roll(-1, 1).tril(-1)


def basis_matrices(cfg: MusatConfig, dtype: torch.dtype = torch.float64) -> dict[str, MusatWeights]:
    """The 19 basis elements as weight triples (mutually orthogonal, not normalised)."""
    slots, out = _slots(cfg), {}
    for name, m, r, c, kind in _components(cfg):
        zero = MusatWeights(*(torch.zeros_like(t) for t in _zero_shapes(cfg, dtype)))
        (r0, r1), (c0, c1) = slots[r], slots[c]
        zero.tensors()[m][r0:r1, c0:c1] = _pattern(kind, r1 - r0, dtype)
        out[name] = zero
    return out


def _zero_shapes(cfg: MusatConfig, dtype: torch.dtype) -> list[torch.Tensor]:
    d0 = cfg.d0
    return [torch.zeros(d0, d0, dtype=dtype), torch.zeros(2 * d0, 2 * d0, dtype=dtype),
            torch.zeros(cfg.d_item, 4 * d0, dtype=dtype)]


def pseudo_params(w: MusatWeights, cfg: MusatConfig) -> dict[str, float]:
    """The 19 coordinates: each the least-squares coefficient (mean of the block's ``I`` or ``S`` entries)."""
    slots, out = _slots(cfg), {}
    mats = [t.detach().double() for t in w.tensors()]
    for name, m, r, c, kind in _components(cfg):
        (r0, r1), (c0, c1) = slots[r], slots[c]
        block = mats[m][r0:r1, c0:c1]
        out[name] = float(block.diagonal().mean() if kind == "I" else block.diagonal(-1).mean())
    return out


def project(w: MusatWeights, cfg: MusatConfig) -> tuple[MusatWeights, dict[str, float]]:
    """The projection of ``w`` on the 19-value basis, and residual norms relative to ``‖w‖``.

    ``residual``: everything off the basis. ``symmetry_residual``: the part of it outside the
    position–position blocks (what the item symmetry forces to 0 under the population loss).
    Both None-safe: 0/0 (the zero init) gives 0.
    """
    coeffs = pseudo_params(w, cfg)
    basis = basis_matrices(cfg)
    proj = [torch.zeros_like(t, dtype=torch.float64) for t in w.tensors()]
    for name, b in basis.items():
        for i, t in enumerate(b.tensors()):
            proj[i] += coeffs[name] * t
    res = [t.detach().double() - p for t, p in zip(w.tensors(), proj)]
    total = float(torch.sqrt(sum((t.detach().double() ** 2).sum() for t in w.tensors())))
    pos_mask = _position_mask(cfg)
    off = float(torch.sqrt(sum((r ** 2).sum() for r in res)))
    sym = float(torch.sqrt(sum(((r * ~m) ** 2).sum() for r, m in zip(res, pos_mask))))
    scale = total if total > 0 else 1.0
    return MusatWeights(*proj), {"residual": off / scale, "symmetry_residual": sym / scale, "norm": total}


def residuals(w: MusatWeights, cfg: MusatConfig) -> dict[str, float]:
    """``project``'s residual norms without building the projection (the basis is orthogonal).

    ``‖W − proj‖² = ‖W‖² − Σ cₖ² ‖Bₖ‖²`` with ``‖I_n‖² = n`` and ``‖S_n‖² = n − 1``.
    """
    slots, coeffs = _slots(cfg), pseudo_params(w, cfg)
    mats = [t.detach().double() for t in w.tensors()]
    total2 = sum(float((t ** 2).sum()) for t in mats)
    pos2 = sum(float(((t * m) ** 2).sum()) for t, m in zip(mats, _position_mask(cfg)))
    explained = explained_pos = 0.0
    for name, _, r, c, kind in _components(cfg):
        n = slots[r][1] - slots[r][0]
        part = coeffs[name] ** 2 * (n if kind == "I" else n - 1)
        explained += part
        if r in ("p", "a1p"):
            explained_pos += part
    scale = total2 ** 0.5 if total2 > 0 else 1.0
    # cancellation floors these at ~1e-8 of ‖W‖ (float64), far below what the tests compare with
    return {"residual": max(total2 - explained, 0.0) ** 0.5 / scale,
            "symmetry_residual": max((total2 - pos2) - (explained - explained_pos), 0.0) ** 0.5 / scale,
            "norm": total2 ** 0.5}


def _position_mask(cfg: MusatConfig) -> list[torch.Tensor]:
    """True on the position–position blocks of W1 and W2 (rows and columns both position slots)."""
    slots = _slots(cfg)
    d0 = cfg.d0
    masks = [torch.zeros(d0, d0, dtype=torch.bool), torch.zeros(2 * d0, 2 * d0, dtype=torch.bool),
             torch.zeros(cfg.d_item, 4 * d0, dtype=torch.bool)]
    for m, names in ((0, ["p"]), (1, ["p", "a1p"])):
        for r in names:
            for c in names:
                (r0, r1), (c0, c1) = slots[r], slots[c]
                masks[m][r0:r1, c0:c1] = True
    return masks


def trajectory_pca_dim(flat: Float[torch.Tensor, "n_checkpoints n_params"], var: float = 0.999
                       ) -> tuple[int, list[float]]:
    """Components needed for ``var`` of the trajectory's variance, and the cumulative explained ratios."""
    x = flat.double() - flat.double().mean(0, keepdim=True)
    s = torch.linalg.svdvals(x) ** 2
    if float(s.sum()) == 0.0:
        return 0, []
    ratio = np.cumsum((s / s.sum()).numpy())
    return int(np.searchsorted(ratio, var - 1e-12) + 1), [float(r) for r in ratio]
