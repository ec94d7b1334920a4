"""Maps inside each attention head, after the head assignment (a variant's ``within_head``).

Beyond permutations, each head's queries and keys admit q -> q M, k -> k M^-T and its values and the output
projection's input v -> v N, W_O columns by N^-T, for any invertible d_k x d_k M, N (``spec.head_maps`` lists
the axes). ``orthogonal`` aligns each head of B (already permuted into A's basis) to A's with one rotation
for Q/K and one for V/O, by orthogonal Procrustes (Zhang et al., ICML 2025): the rotation R minimising
sum ||f_A - f_B R||^2 over the head's features f, from

  activations: the q and k second moments (Q/K) and the context's (V/O: the head's context is softmax V_h,
               so it changes like V_h), uncentred: the map acts on the whole feature, its mean (the bias
               term) included, so the fit is of the features the next operation reads;
  weights:     the rows of W_Q, b_Q, W_K, b_K (Q/K) and of W_V, b_V and W_O's head columns (V/O) of B after
               its permutations (residual axis included), against A's.

A rotation is its own inverse transpose, so the Q and K (V and O) terms of the fit share one R.

A rotation also makes the order inside a head immaterial, so the head assignment is chosen again by what a
rotation can reach (``head_scores``, ``rotate_heads``): the permutation method's LSA scores of rotated heads
can pick the wrong head (a planted rotated copy is not recovered without this).

Storage: in a permutation file next to the permutations, ``map.{perm}`` (perm = qk.{l} or attn.{l}) holds
float64 (H, d_k, d_k): matrix j acts on head j of A's basis after the permutations. A file without them is
the identity (``within_head: permutation``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

# torch is imported where used: reading or writing a permutation file (checkpoints) needs no torch

MAP_PREFIX = "map."
# the variant values (permerge.alignment.variants): permutation (no maps), orthogonal (one rotation per head for Q/K
# and one for V/O)
WITHIN_HEAD: tuple[str, ...] = ("permutation", "orthogonal")


def split_maps(perms: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(permutations, maps by perm name) from the contents of a permutation file."""
    plain = {k: v for k, v in perms.items() if not k.startswith(MAP_PREFIX)}
    maps = {k[len(MAP_PREFIX) :]: v for k, v in perms.items() if k.startswith(MAP_PREFIX)}
    return plain, maps


def procrustes(cross: np.ndarray) -> np.ndarray:
    """The orthogonal R maximising trace(R^T cross), i.e. minimising ||F_A - F_B R|| for cross = F_B^T F_A:
    R = U V^T from cross = U S V^T."""
    u, _, vt = np.linalg.svd(np.asarray(cross, dtype=np.float64))
    return u @ vt


def head_blocks(cross_ab: np.ndarray, p: np.ndarray, num_heads: int) -> np.ndarray:
    """The (H, d_k, d_k) blocks F_B^T F_A of each head of A against its B units p[head j] (p: the gather
    index of the permutation), from the cross second moment cross_ab = F_A^T F_B (A rows, B columns)."""
    d = cross_ab.shape[0]
    dh = d // num_heads
    return np.stack([cross_ab[j * dh : (j + 1) * dh][:, p[j * dh : (j + 1) * dh]].T for j in range(num_heads)])


def head_scores(cross_ab: np.ndarray, norms_a: np.ndarray, norms_b: np.ndarray, num_heads: int) -> np.ndarray:
    """H x H: how well head k of B matches head j of A up to a rotation: the Procrustes optimum
    max_R trace(R^T F_B,k^T F_A,j) = the nuclear norm of the block, over sqrt(||F_A,j||^2 ||F_B,k||^2), so 1
    for a rotated copy and at most 1 otherwise (Cauchy-Schwarz). norms_a / norms_b: each unit's squared norm
    (the diagonals of F_A^T F_A, F_B^T F_B)."""
    dh = cross_ab.shape[0] // num_heads
    na = norms_a.reshape(num_heads, dh).sum(1)
    nb = norms_b.reshape(num_heads, dh).sum(1)
    scores = np.zeros((num_heads, num_heads))
    for j in range(num_heads):
        for k in range(num_heads):
            block = cross_ab[j * dh : (j + 1) * dh, k * dh : (k + 1) * dh]
            scale = np.sqrt(na[j] * nb[k])
            scores[j, k] = np.linalg.svd(block, compute_uv=False).sum() / scale if scale > 0 else 0.0
    return scores


def rotate_heads(
    crosses: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    perms: Mapping[str, np.ndarray],
    blocks: Mapping[str, int],
) -> dict[str, np.ndarray]:
    """Head assignments and per-head rotations of every attention layer, from each head map's
    (cross F_A^T F_B with B in its own unit order, A's unit norms, B's unit norms) for qk.{l} and attn.{l}.

    Rotations make the unit order inside a head immaterial, so the head assignment is chosen by what a
    rotation can reach (``head_scores`` of Q/K plus V/O, one assignment for both, as Algorithm 1); where it
    agrees with ``perms``' the within-head order is kept, otherwise the head's units come in B's order.
    Returns the updated qk.{l} / attn.{l} permutations and their ``map.`` entries."""
    from permerge.alignment.matchers import lsa

    out: dict[str, np.ndarray] = {}
    layers = sorted({name.split(".", 1)[1] for name in crosses}, key=int)
    for l in layers:
        names = [n for n in (f"qk.{l}", f"attn.{l}") if n in crosses]
        heads = blocks[names[0]]
        d = crosses[names[0]][0].shape[0]
        dh = d // heads
        chosen = lsa(sum(head_scores(*crosses[n], heads) for n in names))
        for n in names:
            old = np.asarray(perms.get(n, np.arange(d))).reshape(heads, dh)
            p = np.concatenate(
                [old[j] if old[j, 0] // dh == chosen[j] else chosen[j] * dh + np.arange(dh) for j in range(heads)]
            )
            out[n] = p
            out[MAP_PREFIX + n] = np.stack([procrustes(c) for c in head_blocks(crosses[n][0], p, heads)])
    return out


def _moment(stats, feature: str, a: str, b: str) -> np.ndarray:
    """Uncentred cross second moment E[f_A^T f_B] (population)."""
    import torch

    cov = stats.cross(feature, a, b).double()
    return (cov + torch.outer(stats.mean(feature, a).double(), stats.mean(feature, b).double())).numpy()


def _norms(stats, feature: str, name: str) -> np.ndarray:
    """E[f^2] of every unit (uncentred)."""
    return (stats.var(feature, name).double() + stats.mean(feature, name).double() ** 2).numpy()


def statistics_crosses(stats, a: str, b: str, num_layers: int) -> dict[str, tuple]:
    """``rotate_heads``' input from activations: the q and k moments summed (one rotation serves both) and
    the context's."""
    out = {}
    for l in range(num_layers):
        q, k, c = (f"{kind}.{l}" for kind in ("q", "k", "ctx"))
        out[f"qk.{l}"] = (
            _moment(stats, q, a, b) + _moment(stats, k, a, b),
            _norms(stats, q, a) + _norms(stats, k, a),
            _norms(stats, q, b) + _norms(stats, k, b),
        )
        out[f"attn.{l}"] = (_moment(stats, c, a, b), _norms(stats, c, a), _norms(stats, c, b))
    return out


def _head_axis_rows(t, axis: int):
    """(rows, units): the tensor's entries along ``axis`` as columns, every other axis as rows."""
    import torch

    t = torch.movedim(t.detach().double().cpu(), axis, -1)
    return t.reshape(-1, t.shape[-1])


def weight_crosses(spec, params_a: Mapping[str, torch.Tensor], params_b: Mapping[str, torch.Tensor]):
    """``rotate_heads``' input from weights (Zhang et al.'s Procrustes on the weights): every row of the
    parameters a head map acts on, A against B; B must be in A's basis on every other axis (the residual
    stream) and in its own order on the head axis."""
    out = {}
    for perm, axes in spec.head_maps.items():
        fa = np.concatenate([_head_axis_rows(params_a[n], axis).numpy() for n, axis, _ in axes])
        fb = np.concatenate([_head_axis_rows(params_b[n], axis).numpy() for n, axis, _ in axes])
        out[perm] = (fa.T @ fb, (fa**2).sum(0), (fb**2).sum(0))
    return out


def validate_maps(spec, maps: Mapping[str, np.ndarray]) -> None:
    """Raise ValueError unless every map names a head-map perm of the spec, has shape (H, d_k, d_k), is
    finite and invertible."""
    for perm, m in maps.items():
        if perm not in spec.head_maps:
            known = ", ".join(sorted(spec.head_maps)) or "none"
            raise ValueError(f"unknown head map '{MAP_PREFIX}{perm}' for this model (known: {known})")
        heads = spec.blocks[perm]
        shape = (heads, spec.sizes[perm] // heads, spec.sizes[perm] // heads)
        m = np.asarray(m)
        if m.shape != shape:
            raise ValueError(f"head map '{MAP_PREFIX}{perm}' has shape {m.shape}, expected {shape}")
        if not np.isfinite(m).all():
            raise ValueError(f"head map '{MAP_PREFIX}{perm}' contains NaN or inf")
        if np.linalg.cond(m).max() > 1e8:
            raise ValueError(f"head map '{MAP_PREFIX}{perm}' is not (numerically) invertible")


def apply_maps(params: Mapping[str, torch.Tensor], spec, maps: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """A new dict with the per-head maps applied to the axes the spec lists (parameters already in A's
    basis, i.e. permuted); untouched tensors are passed through. Tied aliases follow their canonical name."""
    import torch

    validate_maps(spec, maps)
    todo: dict[str, list[tuple[int, np.ndarray]]] = {}
    for perm, m in maps.items():
        m = np.asarray(m, dtype=np.float64)
        inv_t = np.linalg.inv(m).transpose(0, 2, 1)
        for name, axis, inverse_transpose in spec.head_maps[perm]:
            todo.setdefault(name, []).append((axis, inv_t if inverse_transpose else m))
    out = dict(params)
    for name, tensor in params.items():
        for axis, m in todo.get(spec.aliases.get(name, name), []):
            heads = m.shape[0]
            t = torch.movedim(tensor.double(), axis, -1)
            shape = t.shape
            mapped = torch.einsum(
                "rhi,hij->rhj", t.reshape(-1, heads, shape[-1] // heads), torch.from_numpy(m).to(t.device)
            )
            tensor = torch.movedim(mapped.reshape(shape), -1, axis).to(tensor.dtype)
        out[name] = tensor
    return out
