"""Weight encodings of the C kernels and the choice between them, per layer.

Variants of a convolution or fully-connected layer (depthwise layers are dense only):
- ``dense``: int8 weights; on a core with the DSP extension the words of 2 (conv) or 4 (fully
  connected) output rows are interleaved for the SMLAD kernels (``dense-dsp``), else rows in
  order (``dense-plain``).
- ``sparse``: only the non-zero weights: per row a count, per weight a 16-bit input position
  (from the row's first input) and the int8 value; padded convolutions also store one tap byte
  per weight for the border pixels. Four weights per pass, each one halfword load, two byte
  loads and one multiply-accumulate.
- ``clustered``: k-bit indices (k = bits for the largest number of distinct values in a row,
  1..7) packed 32 / k per word, each row starting on a word, into a per-row codebook of 2^k int8
  values.

``choose`` picks, per layer, the variant that minimises the deployment's objective: estimated
instructions ('cycles') or weight bytes ('flash'), from ``costs``. For 'cycles', variants within
``CYCLES_TOLERANCE`` of the fewest instructions count as equal (the estimate is not finer than
that) and the one with the fewest weight bytes wins: on the M0+ the plain dense and the sparse
loops cost the same per multiply, and a dense layer stored sparse would triple its flash.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from . import costs
from .ir import CModelError
from .lower import Step

VARIANTS = ("dense", "sparse", "clustered")
CYCLES_TOLERANCE = 0.05
MAX_CLUSTER_BITS = 7


@dataclass
class Encoding:
    variant: str                       # dense-plain | dense-dsp | sparse | clustered
    arrays: Dict[str, np.ndarray]      # C arrays of the weights, by role
    scalars: Dict[str, int] = field(default_factory=dict)
    instructions: float = 0.0          # estimate (costs.py)

    @property
    def flash_bytes(self) -> int:
        """Bytes of the weight arrays (bias and requantization arrays are the same for every
        variant and not counted here)."""
        return int(sum(a.nbytes for a in self.arrays.values()))

    @property
    def family(self) -> str:
        return self.variant.split("-")[0]


# --------------------------------------------------------------------------------------------
# Dense

def words_le(b: np.ndarray) -> np.ndarray:
    """int8 bytes (length a multiple of 4) as little-endian uint32 words."""
    return np.ascontiguousarray(b.astype(np.int8)).view("<u4").astype(np.uint32)


def dense_plain(w: np.ndarray) -> Encoding:
    return Encoding("dense-plain", {"w": np.ascontiguousarray(w.astype(np.int8)).reshape(-1)})


def dense_dsp_conv(w: np.ndarray) -> Encoding:
    """ep_conv_dense_dsp's layout: rows zero-padded to K4 = K rounded up to 4; for each pair of
    rows, their words interleaved group by group; an odd last row's words in order."""
    rows, k = w.shape
    k4 = (k + 3) // 4 * 4
    wp = np.zeros((rows, k4), dtype=np.int8)
    wp[:, :k] = w
    g = k4 // 4
    words = wp.view("<u4").reshape(rows, g)
    out = []
    r = 0
    for r in range(0, rows - 1, 2):
        out.append(np.stack([words[r], words[r + 1]], axis=1).reshape(-1))
    if rows % 2:
        out.append(words[rows - 1])
    return Encoding("dense-dsp", {"w": np.concatenate(out).astype(np.uint32)})


def dense_dsp_fc(w: np.ndarray) -> Encoding:
    """ep_fc_dense_dsp's layout: per block of 4 rows, the rows' words interleaved per group of
    4 inputs, then one word per remaining input holding the 4 rows' weights; rows after the
    last full block: their words in order, the last zero-padded."""
    rows, n = w.shape
    n4 = n // 4 * 4
    out: List[np.ndarray] = []
    r = 0
    for r in range(0, rows - rows % 4, 4):
        blk = w[r:r + 4].astype(np.int8)
        if n4:
            words = np.ascontiguousarray(blk[:, :n4]).view("<u4").reshape(4, n4 // 4)
            out.append(words.T.reshape(-1))
        if n > n4:
            tail = np.ascontiguousarray(blk[:, n4:].T)      # [n - n4, 4]
            out.append(tail.view("<u4").reshape(-1))
    for r in range(rows - rows % 4, rows):
        row = np.zeros((n + 3) // 4 * 4, dtype=np.int8)
        row[:n] = w[r]
        out.append(row.view("<u4"))
    return Encoding("dense-dsp", {"w": np.concatenate(out).astype(np.uint32) if out
                                  else np.zeros(0, dtype=np.uint32)})


# --------------------------------------------------------------------------------------------
# Sparse

def sparse(w: np.ndarray, positions: np.ndarray, taps: Optional[np.ndarray]) -> Optional[Encoding]:
    """w [rows, K]; positions[j]: input offset of column j from the row's first input; taps[j]
    = ky << 4 | kx, or None when no border handling is needed. None when a position or a row's
    entry count does not fit 16 bits."""
    if len(positions) and int(np.max(positions)) > 0xFFFF:
        return None
    nz_rows, nz_cols = np.nonzero(w)
    counts = np.bincount(nz_rows, minlength=w.shape[0])
    if len(counts) and counts.max() > 0xFFFF:
        return None
    arrays = {"count": counts.astype(np.uint16),
              "pos": np.asarray(positions)[nz_cols].astype(np.uint16),
              "value": w[nz_rows, nz_cols].astype(np.int8)}
    if taps is not None:
        arrays["tap"] = np.asarray(taps)[nz_cols].astype(np.uint8)
    enc = Encoding("sparse", arrays)
    enc.scalars["entries"] = int(len(nz_cols))
    enc.scalars["nonzero"] = int(len(nz_cols))
    return enc


def conv_positions(g: dict) -> np.ndarray:
    """Input offset of each OHWI window element from the window's first element."""
    ky, kx, ci = np.meshgrid(np.arange(g["k_h"]), np.arange(g["k_w"]), np.arange(g["in_c"]),
                             indexing="ij")
    return (((ky * g["dil_h"]) * g["in_w"] + kx * g["dil_w"]) * g["in_c"] + ci).reshape(-1)


def conv_taps(g: dict) -> np.ndarray:
    ky, kx, _ = np.meshgrid(np.arange(g["k_h"]), np.arange(g["k_w"]), np.arange(g["in_c"]),
                            indexing="ij")
    return ((ky << 4) | kx).reshape(-1)


def conv_needs_border(g: dict) -> bool:
    """Whether some output pixel's window leaves the input (padding)."""
    last_y = (g["out_h"] - 1) * g["stride_h"] - g["pad_top"] + (g["k_h"] - 1) * g["dil_h"]
    last_x = (g["out_w"] - 1) * g["stride_w"] - g["pad_left"] + (g["k_w"] - 1) * g["dil_w"]
    return g["pad_top"] > 0 or g["pad_left"] > 0 or last_y >= g["in_h"] or last_x >= g["in_w"]


# --------------------------------------------------------------------------------------------
# Clustered

def max_distinct_per_row(w: np.ndarray) -> int:
    s = np.sort(w.astype(np.int16), axis=1)
    return int(1 + (np.diff(s, axis=1) != 0).sum(axis=1).max()) if w.shape[1] else 1


def clustered(w: np.ndarray) -> Optional[Encoding]:
    """None when a row has more than 2^MAX_CLUSTER_BITS distinct values."""
    rows, k = w.shape
    distinct = max_distinct_per_row(w)
    bits = max(1, int(np.ceil(np.log2(distinct)))) if distinct > 1 else 1
    if bits > MAX_CLUSTER_BITS:
        return None
    per = 32 // bits
    row_words = (k + per - 1) // per
    codebook = np.zeros((rows, 1 << bits), dtype=np.int8)
    index = np.zeros((rows, row_words), dtype=np.uint64)
    for r in range(rows):
        values, idx = np.unique(w[r], return_inverse=True)
        codebook[r, :len(values)] = values
        padded = np.zeros(row_words * per, dtype=np.uint64)
        padded[:k] = idx
        shifts = (np.arange(per, dtype=np.uint64) * np.uint64(bits))
        index[r] = (padded.reshape(row_words, per) << shifts).sum(axis=1)
    enc = Encoding("clustered", {"index": index.astype(np.uint32).reshape(-1),
                                 "codebook": codebook.reshape(-1)})
    enc.scalars.update(bits=bits, row_words=row_words, distinct=distinct)
    return enc


# --------------------------------------------------------------------------------------------
# Choice

def candidates(step: Step, dsp: bool, core: Optional[str] = None) -> List[Encoding]:
    """Every variant that can run this layer, with its instruction estimate."""
    w = step.weighted.w
    if step.kind == "dwconv":
        encs = [dense_plain(w)]
        encs[0].variant = "dense-dsp" if dsp else "dense-plain"
    elif step.kind == "conv":
        g = step.params["g"]
        encs = [dense_dsp_conv(w) if dsp else dense_plain(w)]
        border = conv_needs_border(g)
        if not border or (g["k_h"] <= 15 and g["k_w"] <= 15):
            sp = sparse(w, conv_positions(g), conv_taps(g) if border else None)
            if sp is not None:
                encs.append(sp)
        c = clustered(w)
        if c is not None:
            encs.append(c)
    elif step.kind == "fc":
        encs = [dense_dsp_fc(w) if dsp else dense_plain(w)]
        sp = sparse(w, np.arange(w.shape[1]), None)
        if sp is not None:
            encs.append(sp)
        c = clustered(w)
        if c is not None:
            encs.append(c)
    else:
        raise ValueError(step.kind)
    for e in encs:
        e.instructions = costs.estimate_instructions(step, e, dsp, core)
    return encs


def choose(step: Step, dsp: bool, objective: str = "cycles",
           force: Optional[str] = None, core: Optional[str] = None) -> Encoding:
    """The encoding for `step`. force: a variant family (dense | sparse | clustered) to use
    where the layer allows it (else dense)."""
    encs = candidates(step, dsp, core)
    if force is not None:
        if force not in VARIANTS:
            raise CModelError(f"unknown kernel variant '{force}' (choose from {', '.join(VARIANTS)})")
        match = [e for e in encs if e.family == force]
        return match[0] if match else encs[0]
    if objective == "cycles":
        fastest = min(e.instructions for e in encs)
        near = [e for e in encs if e.instructions <= fastest * (1 + CYCLES_TOLERANCE)]
        return min(near, key=lambda e: (e.flash_bytes, e.instructions))
    if objective == "flash":
        return min(encs, key=lambda e: (e.flash_bytes, e.instructions))
    raise CModelError(f"objective must be 'cycles' or 'flash', not '{objective}'")
