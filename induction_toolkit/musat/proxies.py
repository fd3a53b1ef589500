"""Weight-only proxies of Musat's three pseudo-parameters for any 2-layer model (docs/science.md).

For a ``HookedTransformer`` with ≥ 2 layers, with ``t`` the token embeddings (``W_E`` rows, the
first ``MAX_TOKENS``), ``pᵢ`` the position embeddings (``W_pos`` rows) and every product taken as
a direct-path attention logit (divided by the layer's ``attn_scale``; LayerNorm ignored):

- ``α̃₃`` = mean over ``i ≥ 1`` of ``(pᵢ W_Q¹)·(pᵢ₋₁ W_K¹)``: layer 0's positional pull toward
  the previous position (the sub-diagonal of the ``P W_Q W_Kᵀ Pᵀ`` block);
- ``β̃₂`` = mean over ``t`` of ``(t W_Q²)·(t W_V¹ W_O¹ W_K²)``: layer 1 matching a token against the
  same token moved by layer 0 (the diagonal of the virtual K-composition block);
- ``γ̃₃`` = mean over ``t`` of ``(t W_V² W_O² W_U)[t]``: layer 1 copying the attended token (the OV
  circuit's diagonal, ``tr(W_U W_O² W_V² T)/|T|``).

Multi-head layers: the maximum over heads (over head pairs for ``β̃₂``), and the argmax head is
returned too. Means, not the sums of docs/science.md, so the values do not scale with ``n_ctx`` or the
vocabulary. On the disentangled model's export (``model.to_hooked``) they equal ``α₃, β₂, γ₃``
exactly. Range: any real; 0 at zero init (chance has no fixed value for raw logits).
"""

import torch
from transformer_lens import HookedTransformer

MAX_TOKENS = 512
PROXY_KEYS = ("alpha3_proxy", "beta2_proxy", "gamma3_proxy")


def _scale(model: HookedTransformer, layer: int) -> float:
    return float(model.blocks[layer].attn.attn_scale)


@torch.no_grad()
def musat_proxies(model: HookedTransformer) -> dict[str, float | list[int] | None]:
    """``{"alpha3_proxy", "beta2_proxy", "gamma3_proxy"}`` and the heads they come from.

    None for ``α̃₃`` when the model has no position embedding matrix; every value None unless the
    model has exactly 2 layers (MLPs, if any, are skipped: the proxies read the attention path).
    """
    out: dict[str, float | list[int] | None] = {k: None for k in PROXY_KEYS}
    out.update(alpha3_head=None, beta2_heads=None, gamma3_head=None)
    if model.cfg.n_layers != 2:
        return out
    E = model.W_E[:MAX_TOKENS].double()
    W_Q = [model.W_Q[l].double() for l in (0, 1)]
    W_K = [model.W_K[l].double() for l in (0, 1)]
    if getattr(model.cfg, "positional_embedding_type", "standard") in ("standard", "shortformer"):
        P = model.W_pos.double()
        q = torch.einsum("pd,hde->hpe", P[1:], W_Q[0])
        k = torch.einsum("pd,hde->hpe", P[:-1], W_K[0])
        per_head = (q * k).sum(-1).mean(-1) / _scale(model, 0)
        h = int(per_head.argmax())
        out["alpha3_proxy"], out["alpha3_head"] = float(per_head[h]), [0, h]
    q2 = torch.einsum("td,hde->hte", E, W_Q[1])  # [h2, t, e]
    moved = torch.einsum("td,hde,hef->htf", E, model.W_V[0].double(), model.W_O[0].double())  # [h1, t, d]
    k2 = torch.einsum("htd,gde->hgte", moved, W_K[1])  # [h1, h2, t, e]
    beta = (q2[None] * k2).sum(-1).mean(-1) / _scale(model, 1)  # [h1, h2]
    h1, h2 = divmod(int(beta.argmax()), beta.shape[1])
    out["beta2_proxy"], out["beta2_heads"] = float(beta[h1, h2]), [[0, h1], [1, h2]]
    n = min(E.shape[0], model.W_U.shape[1])
    ov = torch.einsum("td,hde,hef->htf", E[:n], model.W_V[1].double(), model.W_O[1].double())
    logits = ov @ model.W_U[:, :n].double()
    gamma = logits.diagonal(dim1=-2, dim2=-1).mean(-1)
    h = int(gamma.argmax())
    out["gamma3_proxy"], out["gamma3_head"] = float(gamma[h]), [1, h]
    return out


def proxy_row(model: HookedTransformer) -> dict[str, float]:
    """The three proxies as metrics-row fields; empty unless the model has exactly 2 layers."""
    if model.cfg.n_layers != 2:
        return {}
    p = musat_proxies(model)
    return {k: p[k] for k in PROXY_KEYS if p[k] is not None}


def proxy_dynamics(rows: list[dict], run_dir=None, threshold: float = 0.5) -> dict | None:
    """The proxies' series over a run and the step each first reaches ``threshold`` (and 0.1).

    From the metrics rows when they carry the proxies (runs trained since issue 15), else computed
    from the run's checkpoints (older runs). None when the run's model does not have 2 layers.
    """
    series = [(r["step"], {k: r[k] for k in PROXY_KEYS if r.get(k) is not None}) for r in rows]
    series = [(s, v) for s, v in series if v]
    source = "metrics"
    if not series and run_dir is not None:
        from ..checkpoints import load_model
        from ..run_dir import list_checkpoints

        source = "checkpoints"
        for step, path in sorted(list_checkpoints(run_dir).items()):
            row = proxy_row(load_model(path, device="cpu").model)
            if not row:
                return None
            series.append((step, row))
    if not series:
        return None
    from .emergence import crossing_step

    steps = [s for s, _ in series]
    out: dict = {"source": source, "steps": steps, "threshold": threshold}
    for k in PROXY_KEYS:
        vals = [v.get(k) for _, v in series]
        if any(v is None for v in vals):
            continue
        out[k] = {"values": vals, "final": vals[-1],
                  "step_at_threshold": crossing_step(steps, vals, threshold),
                  "step_at_0.1": crossing_step(steps, vals, 0.1)}
    return out


def proxy_line(d: dict | None) -> str | None:
    """One text line for ``induct dynamics``: each proxy's final value and threshold step."""
    if not d:
        return None
    parts = []
    for k, name in zip(PROXY_KEYS, ("α̃₃", "β̃₂", "γ̃₃")):
        if k in d:
            s = d[k]["step_at_threshold"]
            parts.append(f"{name} {d[k]['final']:+.2f} (≥ {d['threshold']} at {'—' if s is None else f'{s:.0f}'})")
    return f"Musat proxies ({d['source']}): " + ", ".join(parts) + "; docs/musat.md"
