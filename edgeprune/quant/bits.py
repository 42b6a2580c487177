"""Deep-Compression bit accounting of a (pruned, clustered) model: what its weights cost in bits.

Han, Mao & Dally, "Deep Compression" (ICLR 2016), §2-§3 and Table 1: index bits of the non-zero
weights, codebooks, and the cheaper of relative-index or CSR sparse overhead per layer, plus
32-bit biases; compared with the dense float32 model (see docs/clustering.md).
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from .cluster import (BIAS_BITS, FLOAT_BITS, MAX_BITS, PAPER_RELATIVE_INDEX_BITS, ClusterError,
                      ClusterState, LayerCodebook, weight_layers)
from ..errors import EdgepruneError
from ..layergraph import OpKind

def _relative_index_cost(positions: np.ndarray, value_bits: int,
                         index_bits: int) -> Tuple[int, int]:
    """(bits, filler entries) of relative-index storage.

    Each stored entry is (index_bits gap, value_bits value). The gap to the previous stored entry
    is in [1, 2^index_bits] (stored minus one, as in Deep Compression Fig. 2, where a 3-bit gap
    spans up to 8); a longer gap is bridged with filler entries holding the value zero, one per
    2^index_bits positions. Zeros after the last non-zero are implied by the known tensor size.
    """
    gaps = np.diff(positions, prepend=-1)
    fillers = int(((gaps - 1) >> index_bits).sum())
    return (len(positions) + fillers) * (index_bits + value_bits), fillers


def unread_channels(model: nn.Module, graph) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    """Channels no consumer reads, from the layer graph's coupled-channel groups.

    Channel c of a prunable group is unread when every consumer ('in' member) has only zero
    weights for it: nothing downstream depends on it, so physical shrinking removes it together
    with its producers' rows ('out', 'dw') and their biases. Returns per module name
    (keep_rows over weight dim 0, keep_cols over weight dim 1); layers not named keep all.
    Channels whose producers are all zero are *not* removed: with a bias, BN or sigmoid after
    them they still output a constant that the consumers read.
    """
    layers = weight_layers(model)
    keep_rows: Dict[str, np.ndarray] = {}
    keep_cols: Dict[str, np.ndarray] = {}

    def module_of(node_name: str) -> Tuple[Optional[str], Optional[nn.Module]]:
        target = graph[node_name].target
        return target, layers.get(target)

    for grp in graph.prunable_groups():
        ins = [m for m in grp.members if m.role == "in"]
        if not ins:
            continue
        read = np.zeros(grp.size, dtype=bool)
        in_slices = []
        for m in ins:
            target, mod = module_of(m.node)
            if mod is None:
                read[:] = True
                break
            w = mod.weight.detach().cpu()
            cols = w.reshape(w.shape[0], w.shape[1], -1).ne(0).any(2).any(0).numpy()
            lo, hi = m.offset * m.repeat, (m.offset + grp.size) * m.repeat
            read |= cols[lo:hi].reshape(grp.size, m.repeat).any(1)
            in_slices.append((target, w.shape[1], lo, hi, m.repeat))
        if read.all():
            continue
        for target, width, lo, hi, repeat in in_slices:
            mask = keep_cols.setdefault(target, np.ones(width, dtype=bool))
            mask[lo:hi] &= np.repeat(read, repeat)
        for m in grp.members:
            if m.role in ("out", "dw"):
                target, mod = module_of(m.node)
                if mod is not None:
                    mask = keep_rows.setdefault(target, np.ones(mod.weight.shape[0], dtype=bool))
                    mask[m.offset:m.offset + grp.size] &= read
    return keep_rows, keep_cols


def _layer_bits(name: str, module: nn.Module, lc: Optional[LayerCodebook],
                relative_index_bits: Optional[int], keep_rows: Optional[np.ndarray],
                keep_cols: Optional[np.ndarray]) -> dict:
    w_full = module.weight.detach().cpu().float()
    if lc is not None and not torch.equal(lc.weight().float(), w_full):
        raise ClusterError(f"layer '{name}': model weights are not tied to the cluster state "
                           f"(call apply(state, model) first)")
    out_ch, n = w_full.shape[0], w_full.numel()
    rows = torch.from_numpy(keep_rows) if keep_rows is not None else torch.ones(out_ch, dtype=torch.bool)
    w = w_full[rows]
    if keep_cols is not None:
        w = w[:, torch.from_numpy(keep_cols)]
    live_rows = int(rows.sum())
    w2d = w.reshape(live_rows, -1)
    row_len = int(w2d.shape[1])
    nz_mask = (w2d != 0).numpy()
    nnz = int(nz_mask.sum())
    kind = OpKind.LINEAR if isinstance(module, nn.Linear) else "conv"

    if lc is not None:
        value_bits = lc.bits
        # 2^b float32 entries per codebook; per-channel codebooks only for the stored channels
        codebooks = live_rows if lc.per_channel else 1
        codebook_bits = codebooks * (1 << lc.bits) * FLOAT_BITS
    else:
        value_bits, codebooks, codebook_bits = FLOAT_BITS, 0, 0

    options: Dict[str, int] = {"dense": live_rows * row_len * value_bits}
    rel_best: Optional[Tuple[int, int, int]] = None
    # Sparse formats need a code for the filler/zero value: a clustered layer has one only when
    # zero is its reserved code 0.
    if nnz < w2d.numel() and (lc is None or lc.zero_code):
        positions = np.flatnonzero(nz_mask.ravel())
        candidates = [relative_index_bits] if relative_index_bits else range(1, MAX_BITS + 1)
        for p in candidates:
            bits, fillers = _relative_index_cost(positions, value_bits, p)
            if rel_best is None or bits < rel_best[0]:
                rel_best = (bits, p, fillers)
        options["relative"] = rel_best[0]
        # CSR over [stored rows, row_len]: a column index per non-zero plus rows + 1 row
        # pointers wide enough to hold nnz.
        col_bits = max(1, math.ceil(math.log2(row_len)))
        ptr_bits = max(1, math.ceil(math.log2(nnz + 1)))
        options["csr"] = nnz * (value_bits + col_bits) + (live_rows + 1) * ptr_bits
    storage = min(options, key=lambda k: (options[k], k != "dense"))
    weight_bits = options[storage]
    biases = int(module.bias.numel()) if module.bias is not None else 0
    biases_stored = live_rows if module.bias is not None else 0
    bias_bits = biases_stored * BIAS_BITS
    total = weight_bits + codebook_bits + bias_bits
    dense_bits = FLOAT_BITS * (n + biases)
    # Split of the chosen storage into values (codes or floats) and sparse-index overhead.
    if storage == "relative":
        value_part = (nnz + rel_best[2]) * value_bits
    elif storage == "csr":
        value_part = nnz * value_bits
    else:
        value_part = weight_bits
    return {
        "name": name, "kind": kind, "weights": n, "nonzero": nnz, "biases": biases,
        "biases_stored": biases_stored, "channels": out_ch, "live_channels": live_rows,
        "stored_shape": list(w.shape),
        "clustered": lc is not None, "value_bits": value_bits,
        "per_channel": bool(lc.per_channel) if lc is not None else False,
        "codebooks": codebooks, "codebook_bits": codebook_bits,
        "storage": storage, "storage_options_bits": options,
        "relative_index_bits": rel_best[1] if storage == "relative" else None,
        "paper_relative_index_bits": PAPER_RELATIVE_INDEX_BITS[kind],
        "fillers": rel_best[2] if storage == "relative" else 0,
        "value_bits_total": value_part, "sparse_index_bits": weight_bits - value_part,
        "weight_bits": weight_bits, "bias_bits": bias_bits, "total_bits": total,
        "dense_bits": dense_bits, "compression": dense_bits / total if total else float("inf"),
    }


def bit_accounting(model: nn.Module, graph=None, cluster_state: Optional[ClusterState] = None,
                   relative_index_bits: Optional[int] = None,
                   dense_reference: Optional[nn.Module] = None) -> dict:
    """Storage of the model's conv/linear layers in bits, Deep-Compression style.

    Per layer: value bits (b-bit cluster index, or 32-bit float for unclustered layers) per
    stored entry; codebooks of 2^b float32 per layer (or per stored output channel); for layers
    with zeros the cheapest of dense storage, relative indices with filler zeros (index width
    searched in 1..16 bits unless ``relative_index_bits`` is given) and CSR; 32-bit biases.
    Channels that no consumer reads (see `unread_channels`) are not stored. Dense reference:
    32 bits x every conv/linear weight and bias. ``graph`` (a LayerGraph; extracted here when
    the model has ``input_shape``) restricts the accounting to its compute nodes and finds the
    unread channels; without one every channel is stored. BN is not counted (folded at export).
    ``dense_reference``: the unpruned model the totals compare against when ``model`` had
    channels physically removed (e.g. a prune output's shrunk.pt2); default ``model`` itself.
    """
    notes: List[str] = []
    if graph is None and getattr(model, "input_shape", None) is not None:
        from ..graph import extract
        try:
            graph = extract(model)
        except EdgepruneError as e:
            notes.append(f"no layer graph ({e}); every channel counted as stored")
    layers = weight_layers(model)
    keep_rows: Dict[str, np.ndarray] = {}
    keep_cols: Dict[str, np.ndarray] = {}
    if graph is not None:
        targets = [n.target for n in graph.compute_nodes()]
        layers = {t: layers[t] for t in targets if t in layers}
        keep_rows, keep_cols = unread_channels(model, graph)
    state_layers = cluster_state.layers if cluster_state is not None else {}
    unknown = [n for n in state_layers if n not in layers]
    if unknown:
        raise ClusterError(f"cluster state names layer '{unknown[0]}', which the model lacks")
    rows = [_layer_bits(n, m, state_layers.get(n), relative_index_bits, keep_rows.get(n),
                        keep_cols.get(n)) for n, m in layers.items()]
    dense = sum(r["dense_bits"] for r in rows)
    total = sum(r["total_bits"] for r in rows)
    params = sum(r["weights"] + r["biases"] for r in rows)
    weights_dense = sum(FLOAT_BITS * r["weights"] for r in rows)
    if dense_reference is not None:
        ref = weight_layers(dense_reference).values()
        params = sum(m.weight.numel() + (m.bias.numel() if m.bias is not None else 0) for m in ref)
        dense = FLOAT_BITS * params
        weights_dense = FLOAT_BITS * sum(m.weight.numel() for m in ref)
        notes.append(f"dense reference: {params} conv/linear params of the unpruned model")
    stored = sum(r["nonzero"] + r["biases_stored"] for r in rows)
    weights_stored = sum(r["weight_bits"] + r["codebook_bits"] for r in rows)
    removed = sum(r["channels"] - r["live_channels"] for r in rows)
    nz_value_bits = sum(r["nonzero"] * r["value_bits"] for r in rows)
    if removed:
        notes.append(f"{removed} output channels no consumer reads are not stored")
    totals = {
        "dense_bits": dense, "compressed_bits": total,
        "compression": dense / total if total else float("inf"),
        "weight_bits": sum(r["weight_bits"] for r in rows),
        "value_bits": sum(r["value_bits_total"] for r in rows),
        "sparse_index_bits": sum(r["sparse_index_bits"] for r in rows),
        "codebook_bits": sum(r["codebook_bits"] for r in rows),
        "bias_bits": sum(r["bias_bits"] for r in rows),
        # Weights only (codes + sparse index + codebooks vs 32-bit weights), biases left out:
        # the figure some papers quote; reported beside, never instead of, the full one.
        "weights_only_compression": weights_dense / weights_stored if weights_stored else float("inf"),
        # Dense bits over the value bits of the non-zero weights alone (b per non-zero: no
        # positions, codebooks or biases). Not a storage size; it is the accounting under which
        # published figures such as 3232x (= 303x params x 32/3 bits) come out, for comparison.
        "values_only_compression": dense / nz_value_bits if nz_value_bits else float("inf"),
        "params": params, "params_stored": stored,
        "params_compression": params / stored if stored else float("inf"),
        "bytes": math.ceil(total / 8),
    }
    return {"layers": rows, "totals": totals, "notes": notes}
