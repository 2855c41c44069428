"""The agents' environment: code a clip with a QP decision, segment it, score it, reward it.

Reward (paper II-A): ``r = -(R + lambda * D)`` with

* ``R`` -- the rate, normalised: coded bits divided by the bits of the same clip coded at the
  *reference decision* (QP_I 22 with the GOP-8 rule, no CTU offsets), so ``R = 1`` at the
  paper's middle operating point whatever the clip's size or content, and lambda means the
  same on every clip;
* ``D`` -- the semantic distortion, the drop of task accuracy
  (:func:`dmic_core.evaluation.accuracy_drop`): mIoU of the segmentation of the original
  against the reference minus mIoU of the segmentation of the decoded clip against it (the
  reference is the ground-truth label when given, else the segmentation of the original, where
  the drop is simply ``1 - mIoU``);
* ``lambda`` in 0..100: at 100 one mIoU point (0.01) is worth the whole reference rate.

Two implementations of the same :class:`Outcome`:

:class:`RealEnv`
    really encodes (x265 through :func:`dmic_core.pipeline.code_volume`), decodes and segments.
    Every number reported anywhere comes from here.
:class:`ClipCache` (the surrogate, for training speed)
    built from real encodes of the clip under *uniform* decisions: for every frame-QP band
    ``d`` of the GOP-8 rule (6, 7, 8) and every shift ``s`` = QP_I + offset the space can reach,
    one encode with frame QPs ``clip(s + pattern_d)``. A CTU of a mixed decision with QP_I ``q``
    and offset ``o`` is looked up in the encode ``(d(q), q + o)``, which gave *that CTU in that
    frame* exactly its absolute QP, under the same GOP pattern. Per encode and CTU it keeps:
    the frame's bits times the CTU's *rate share* (a residual-energy proxy, below), the
    segmentation's true-positive and predicted-positive counts, and the squared error. A mixed
    decision is the CTU mosaic of these: rate = sum of CTU rate shares, and mIoU from the summed
    counts -- exact for the mosaic of segmentations, since IoUs only need TP, P and |ref|.
    What it cannot see: a CTU's QP changing its neighbours' segmentation (the segmenter's
    receptive field) and the inter-frame/intra-frame prediction from differently coded
    neighbours. ``docs/agents.md`` reports its measured error against real encodes, and two
    optional rate corrections fitted on real encodes (:attr:`ClipCache.rate_qp_cap`,
    :attr:`ClipCache.edge_rate`) for the extended space's coarse backgrounds.

Rate share proxy of CTU ``c`` in frame ``f`` of encode ``k`` (frame QP ``q``, quantiser step
``Delta = 4 HU * 2^((q - 4) / 6)`` for paper QP ``q``): ``A = sum_px log2(1 + |e| / Delta)``, with ``e`` the
residual against a cheap prediction: the 8x8 block mean of the original for the I frame, the
co-located pixels of the *decoded* previous frame of encode ``k`` for P frames. Shares are
``A / sum_c A`` (uniform when the frame has no residual at all).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from dmic_core.agents.spaces import PAPER, ActionSpace, get_space
from dmic_core.codecs.qp import CTU_SIZE, ctu_grid_shape, dmic_frame_qps, p_frame_delta
from dmic_core.evaluation import TaskReference, accuracy_drop, make_reference
from dmic_core.metrics.quality import psnr_from_sse
from dmic_core.metrics.task import scores_from_counts, segmentation_scores
from dmic_core.pipeline import TASK_CODING, CodingSetup, code_volume
from dmic_core.segmentation.base import Segmenter
from dmic_core.volume import Volume

#: QP_I of the reference decision that normalises the rate.
RATE_REFERENCE_QP_I = 22
#: HU per quantisation level at QP 4 (4 HU per 10-bit level over the full range, step 1 at QP 4).
HU_PER_LEVEL = 4.0


def reward(rate: float | np.ndarray, drop: float | np.ndarray, lam: float | np.ndarray) -> float | np.ndarray:
    """``-(R + lambda * D)``."""
    return -(rate + lam * drop)


@dataclass
class Outcome:
    """Result of one decision on one clip.

    Attributes:
        bits: coded bits; ``rate``: bits / reference bits; ``bpp``: bits per voxel.
        miou / vessel_iou / dice: accuracy of the decoded clip's segmentation vs the reference.
        drop: accuracy drop D; ``reward``: ``-(rate + lambda * drop)``.
        psnr_hu: PSNR in HU (peak :data:`dmic_core.defaults.PSNR_PEAK_HU`, as every reported PSNR).
        source: ``"real"`` or ``"surrogate"``.
    """

    qp_i: int
    lam: float
    bits: float
    rate: float
    bpp: float
    miou: float
    vessel_iou: float
    dice: float
    drop: float
    reward: float
    psnr_hu: float
    source: str
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ctu_sums(x: np.ndarray) -> np.ndarray:
    """Sum of ``x`` ``(F, H, W)`` over every CTU: ``(F, rows, cols)`` (partial CTUs: their pixels)."""
    n, h, w = x.shape
    rows, cols = ctu_grid_shape(h, w)
    dtype = np.float64 if x.dtype.kind == "f" else np.int64
    pad = np.zeros((n, rows * CTU_SIZE, cols * CTU_SIZE), dtype=dtype)
    pad[:, :h, :w] = x
    return pad.reshape(n, rows, CTU_SIZE, cols, CTU_SIZE).sum(axis=(2, 4))




class RealEnv:
    """The real environment of one clip: x265 encode + decode, segmentation, score.

    Args:
        volume: the clip.
        segmenter: the task model (also makes the agents' mask: the segmentation of the original).
        label: ground truth, the accuracy reference when given.
        reference: a precomputed :class:`TaskReference` (skips segmenting the original).
        setup: coding setup (default :data:`dmic_core.pipeline.TASK_CODING`).
    """

    def __init__(self, volume: Volume, segmenter: Segmenter, label: np.ndarray | None = None, *,
                 reference: TaskReference | None = None, setup: CodingSetup = TASK_CODING,
                 space: ActionSpace | str = PAPER):
        self.volume = volume
        self.segmenter = segmenter
        self.reference = reference if reference is not None else make_reference(segmenter, volume, label)
        self.setup = setup
        self.space = get_space(space)
        self._bits_ref: float | None = None

    @property
    def mask(self) -> np.ndarray:
        """The mask the agents see: segmentation of the original."""
        return self.reference.roi

    @property
    def bits_ref(self) -> float:
        """Bits of the reference decision (encoded once, lazily)."""
        if self._bits_ref is None:
            ref_qps = dmic_frame_qps(RATE_REFERENCE_QP_I, self.volume.n_frames)
            coded = code_volume(self.volume, frame_qps=ref_qps, setup=self.setup)
            self._bits_ref = float(coded.encode.total_bits)
        return self._bits_ref

    def step(self, qp_i: int, offsets: np.ndarray | None, lam: float) -> Outcome:
        """Really code the clip with ``qp_i`` and CTU ``offsets`` and score it at ``lam``."""
        t0 = time.perf_counter()
        n = self.volume.n_frames
        frame_qps = dmic_frame_qps(int(qp_i), n)
        coded = code_volume(self.volume, frame_qps=frame_qps, ctu_dqp=offsets, setup=self.setup)
        t1 = time.perf_counter()
        scores = segmentation_scores(self.segmenter.segment(coded.recon), self.reference.reference)
        t2 = time.perf_counter()
        bits = float(coded.encode.total_bits)
        drop = accuracy_drop(scores, self.reference)
        rate = bits / self.bits_ref
        diff = coded.recon.hu.astype(np.float64) - self.volume.hu.astype(np.float64)
        return Outcome(int(qp_i), float(lam), bits, rate, bits / self.volume.hu.size, scores["miou"],
                       scores["vessel_iou"], scores["dice"], drop, float(reward(rate, drop, lam)),
                       psnr_from_sse(float(np.sum(diff * diff)), diff.size), "real",
                       {"code": t1 - t0, "segment": t2 - t1})


def offset_edge_steps(offsets: np.ndarray) -> float:
    """Sum over the edges between horizontally and vertically adjacent CTUs of a frame of their
    QP-offset difference ``|o_a - o_b|``: how "mixed" a decision is.

    The surrogate prices each CTU as if its whole frame had its QP, so it misses what a real
    encode spends where QPs change between neighbours; that cost grows with this sum
    (``bench/surrogate_rate_fit.py``, docs/agents.md).
    """
    o = np.asarray(offsets, dtype=np.float64)
    return float(np.abs(np.diff(o, axis=-1)).sum() + np.abs(np.diff(o, axis=-2)).sum())


def edge_steps_change(offsets: np.ndarray, candidate: float | np.ndarray) -> np.ndarray:
    """``(F, R, C)``: how :func:`offset_edge_steps` changes when that CTU alone takes ``candidate``."""
    o = np.asarray(offsets, dtype=np.float64)
    cand = np.broadcast_to(np.asarray(candidate, dtype=np.float64), o.shape)
    change = np.zeros_like(o)
    for axis in (-1, -2):
        n = o.shape[axis]
        for lo, hi in ((slice(1, n), slice(0, n - 1)), (slice(0, n - 1), slice(1, n))):
            here, there = [slice(None)] * o.ndim, [slice(None)] * o.ndim
            here[axis], there[axis] = lo, hi
            here, there = tuple(here), tuple(there)
            change[here] += np.abs(cand[here] - o[there]) - np.abs(o[here] - o[there])
    return change


def cache_keys(space: ActionSpace, n_frames: int) -> list[tuple[int, int]]:
    """Uniform encodes ``(d, s)`` a surrogate of ``space`` needs: band ``d``, QP shift ``s``."""
    keys = set()
    for qp_i in space.qp_i:
        for off in space.offsets:
            keys.add((p_frame_delta(qp_i), qp_i + off))
    return sorted(keys)


def band_pattern(d: int, n_frames: int) -> np.ndarray:
    """Frame QPs minus QP_I for band ``d`` (the GOP-8 pattern)."""
    rep = {6: 14, 7: 22, 8: 30}[d]
    return dmic_frame_qps(rep, n_frames) - rep


def key_frame_qps(key: tuple[int, int], n_frames: int) -> np.ndarray:
    """Paper frame QPs of the uniform encode ``key`` (the codec clips coded QPs to 0..51 itself,
    the same way it clips a CTU's frame QP + offset, so both agree)."""
    d, s = key
    return (s + band_pattern(d, n_frames)).astype(np.int32)


def _rate_activity(orig: np.ndarray, recon: np.ndarray, frame_qps: np.ndarray) -> np.ndarray:
    """Per-CTU residual activity ``A`` (see module docstring): ``(F, rows, cols)``."""
    n, h, w = orig.shape
    x = orig.astype(np.float32)
    pred = np.empty_like(x)
    hb, wb = h // 8 * 8, w // 8 * 8
    blocks = x[0, :hb, :wb].reshape(hb // 8, 8, wb // 8, 8).mean(axis=(1, 3))
    pred[0] = x[0]
    pred[0, :hb, :wb] = np.repeat(np.repeat(blocks, 8, axis=0), 8, axis=1)
    if n > 1:
        pred[1:] = recon[:-1]
    step = HU_PER_LEVEL * 2.0 ** ((np.asarray(frame_qps, dtype=np.float32) - 4.0) / 6.0)
    act = np.log2(1.0 + np.abs(x - pred) / step[:, None, None])
    return ctu_sums(act)


@dataclass
class ClipCache:
    """Surrogate of one clip built from real uniform encodes (see the module docstring).

    Arrays are indexed by encode ``k`` (``keys[k] = (d, s)``), frame, CTU row, CTU column.
    """

    space_name: str
    keys: list[tuple[int, int]]
    frame_bits: np.ndarray      # (K, F) bits of each frame
    share: np.ndarray           # (K, F, R, C) CTU rate share within its frame
    tp: np.ndarray              # (K, F, R, C) segmentation true positives
    pc: np.ndarray              # (K, F, R, C) segmentation predicted positives
    sse: np.ndarray             # (K, F, R, C) squared HU error
    ref_count: int              # |reference mask|
    n_voxels: int
    original_miou: float
    bits_ref: float
    shape: tuple[int, int, int]
    meta: dict[str, Any] = field(default_factory=dict)
    #: Mixed-QP rate correction ``(kappa, c)``: ``kappa * 2^(-(QP_I - 32) / c)`` bits per unit of
    #: :func:`offset_edge_steps` added to a decision's bits (0: the plain mosaic). Set by training
    #: (``FinetuneConfig.rate_edge_bits``), not stored in the cache file: it is a model on top.
    edge_rate: tuple[float, float] = (0.0, 6.0)
    #: Rate saturation: a CTU whose I-frame-equivalent QP (QP_I + offset) is above this is priced
    #: at this QP (its segmentation and error still at its own). Real mixed encodes stop saving
    #: bits there (docs/agents.md); None: no cap. Set by training like :attr:`edge_rate`.
    rate_qp_cap: int | None = None

    # ------------------------------------------------------------------------------- building
    @classmethod
    def build(cls, volume: Volume, segmenter: Segmenter, reference: TaskReference, *,
              space: ActionSpace | str = PAPER, setup: CodingSetup = TASK_CODING,
              progress: Callable[[int, int], None] | None = None) -> "ClipCache":
        """Encode ``volume`` once per needed uniform decision and keep the per-CTU quantities."""
        space = get_space(space)
        n, h, w = volume.shape
        rows, cols = ctu_grid_shape(h, w)
        keys = cache_keys(space, n)
        k_n = len(keys)
        frame_bits = np.zeros((k_n, n), dtype=np.float64)
        share = np.zeros((k_n, n, rows, cols), dtype=np.float32)
        tp = np.zeros((k_n, n, rows, cols), dtype=np.int32)
        pc = np.zeros((k_n, n, rows, cols), dtype=np.int32)
        sse = np.zeros((k_n, n, rows, cols), dtype=np.float64)
        ref = np.asarray(reference.reference) > 0
        orig = volume.hu.astype(np.float32)
        t0 = time.perf_counter()
        seconds = {"code": 0.0, "segment": 0.0}
        bits_ref = None
        ref_qps = dmic_frame_qps(RATE_REFERENCE_QP_I, n)
        for k, key in enumerate(keys):
            fq = key_frame_qps(key, n)
            ta = time.perf_counter()
            coded = code_volume(volume, frame_qps=fq, setup=setup)
            tb = time.perf_counter()
            pred = np.asarray(segmenter.segment(coded.recon)) > 0
            tc = time.perf_counter()
            seconds["code"] += tb - ta
            seconds["segment"] += tc - tb
            frame_bits[k] = coded.encode.bits_per_frame
            recon = coded.recon.hu.astype(np.float32)
            act = _rate_activity(orig, recon, fq)
            tot = act.sum(axis=(1, 2), keepdims=True)
            share[k] = np.where(tot > 0, act / np.maximum(tot, 1e-12), 1.0 / (rows * cols))
            tp[k] = ctu_sums(pred & ref)
            pc[k] = ctu_sums(pred)
            sse[k] = ctu_sums((recon - orig) ** 2)
            if np.array_equal(fq, ref_qps):
                bits_ref = float(coded.encode.total_bits)
            if progress is not None:
                progress(k + 1, k_n)
        if bits_ref is None:
            coded = code_volume(volume, frame_qps=ref_qps, setup=setup)
            bits_ref = float(coded.encode.total_bits)
        meta = {"setup": asdict(setup), "build_seconds": time.perf_counter() - t0, **seconds,
                "reference_kind": reference.kind}
        return cls(space.name, keys, frame_bits, share, tp, pc, sse, int(ref.sum()), int(ref.size),
                   float(reference.original_scores["miou"]), bits_ref, (n, h, w), meta)

    # ------------------------------------------------------------------------------ evaluation
    def key_index(self, qp_i: int, offsets: np.ndarray) -> np.ndarray:
        """Encode index of every CTU ``(F, R, C)`` for a decision."""
        table = self._table()
        d = p_frame_delta(int(qp_i))
        s = int(qp_i) + np.asarray(offsets, dtype=np.int64) - self._s_min
        inside = (s >= 0) & (s < table.shape[1]) & (6 <= d <= 8)
        idx = table[min(max(d - 6, 0), 2)][np.clip(s, 0, table.shape[1] - 1)]
        if not inside.all() or np.any(idx < 0):
            raise ValueError(f"decision (QP_I {qp_i}, offsets {np.unique(offsets).tolist()}) is outside "
                             f"the cached {self.space_name} space")
        return idx

    def _table(self) -> np.ndarray:
        if not hasattr(self, "_lookup"):
            s_all = [s for _, s in self.keys]
            self._s_min = min(s_all)
            table = np.full((3, max(s_all) - self._s_min + 1), -1, dtype=np.int64)
            for k, (d, s) in enumerate(self.keys):
                table[d - 6, s - self._s_min] = k
            self._lookup = table
        return self._lookup

    def _per_ctu(self, qp_i: int, offsets: np.ndarray) -> tuple[np.ndarray, ...]:
        """Per-CTU bits, TP, P and SSE of a decision; bits from the capped QP (:attr:`rate_qp_cap`)."""
        idx = self.key_index(qp_i, offsets)
        bits, tp, pc, sse = self._gather(idx)
        if self.rate_qp_cap is not None:
            band = p_frame_delta(int(qp_i))
            lowest = min(sh for d, sh in self.keys if d == band) - int(qp_i)  # finest cached offset
            capped = np.minimum(np.asarray(offsets), max(int(self.rate_qp_cap) - int(qp_i), lowest))
            if not np.array_equal(capped, offsets):
                bits = self._gather(self.key_index(qp_i, capped))[0]
        return bits, tp, pc, sse

    def _gather(self, idx: np.ndarray) -> tuple[np.ndarray, ...]:
        n, rows, cols = idx.shape
        f = np.arange(n)[:, None, None]
        r = np.arange(rows)[None, :, None]
        c = np.arange(cols)[None, None, :]
        bits = self.frame_bits[idx, np.broadcast_to(f, idx.shape)] * self.share[idx, f, r, c]
        return bits, self.tp[idx, f, r, c], self.pc[idx, f, r, c], self.sse[idx, f, r, c]

    def edge_bits_per_step(self, qp_i: int) -> float:
        """Bits :attr:`edge_rate` adds per unit of offset step between neighbours at ``qp_i``."""
        kappa, halving = self.edge_rate
        return float(kappa * 2.0 ** (-(int(qp_i) - 32) / halving)) if kappa else 0.0

    def _edge_bits(self, qp_i: int, offsets: np.ndarray) -> float:
        """The :attr:`edge_rate` term of a whole decision (0 without it)."""
        per_step = self.edge_bits_per_step(qp_i)
        return per_step * offset_edge_steps(offsets) if per_step else 0.0

    def evaluate(self, qp_i: int, offsets: np.ndarray | None, lam: float) -> Outcome:
        """Surrogate outcome of a decision (``offsets=None``: all zero)."""
        n, h, w = self.shape
        rows, cols = ctu_grid_shape(h, w)
        if offsets is None:
            offsets = np.zeros((n, rows, cols), dtype=np.int32)
        bits, tp, pc, sse = self._per_ctu(qp_i, offsets)
        total = float(bits.sum()) + self._edge_bits(qp_i, offsets)
        scores = scores_from_counts(tp.sum(), pc.sum(), self.ref_count, self.n_voxels)
        drop = self.original_miou - scores["miou"]
        rate = total / self.bits_ref
        return Outcome(int(qp_i), float(lam), total, rate, total / self.n_voxels, scores["miou"],
                       scores["vessel_iou"], scores["dice"], drop, float(reward(rate, drop, lam)),
                       psnr_from_sse(float(sse.sum()), self.n_voxels), "surrogate")

    def ctu_rewards(self, qp_i: int, offsets: np.ndarray, lam: float, baseline_offset: int = 0
                    ) -> tuple[float, np.ndarray]:
        """Clip reward and per-CTU *difference rewards* ``(F, R, C)`` of a decision.

        A CTU's difference reward is the clip reward minus the clip reward with only that CTU
        moved to ``baseline_offset``, times the number of CTUs (so it is on the clip reward's
        scale). It isolates each CTU's own effect on rate and accuracy from the other CTUs'
        random choices: the CTU agent's low-variance learning signal.
        """
        b, tp, pc, _ = self._per_ctu(qp_i, offsets)
        b0, tp0, pc0, _ = self._per_ctu(qp_i, np.full_like(np.asarray(offsets), baseline_offset))
        tot_b, tot_tp, tot_pc = b.sum() + self._edge_bits(qp_i, offsets), tp.sum(), pc.sum()
        per_step = self.edge_bits_per_step(qp_i)
        if per_step:  # the edge term changes with the CTU's move too
            b0 = b0 + per_step * edge_steps_change(offsets, baseline_offset)
        miou = scores_from_counts(tot_tp, tot_pc, self.ref_count, self.n_voxels)["miou"]
        r = float(reward(tot_b / self.bits_ref, self.original_miou - miou, lam))
        miou_cf = scores_from_counts(tot_tp - tp + tp0, tot_pc - pc + pc0, self.ref_count, self.n_voxels)["miou"]
        r_cf = reward((tot_b - b + b0) / self.bits_ref, self.original_miou - miou_cf, lam)
        return r, (r - r_cf) * b.size

    def frame_action_values(self, qp_is: Sequence[int], offsets: np.ndarray, lam: float) -> np.ndarray:
        """Clip reward of every QP_I in ``qp_is`` with the same CTU ``offsets``: the frame agent's
        action values ``Q(a)`` for one episode (exact on the surrogate, no sampling)."""
        return np.asarray([self.evaluate(int(q), offsets, lam).reward for q in qp_is])

    def ctu_action_values(self, qp_i: int, offsets: np.ndarray, lam: float,
                          candidates: Sequence[int]) -> np.ndarray:
        """Clip reward with each CTU alone moved to each candidate offset, the other CTUs kept:
        ``(F, R, C, len(candidates))``. Row ``[f, r, c, j]`` is the counterfactual clip reward
        of CTU ``(f, r, c)`` taking ``candidates[j]``; for the offset it took, it is the clip
        reward itself. The CTU agent's action values (difference rewards for every action)."""
        b, tp, pc, _ = self._per_ctu(qp_i, offsets)
        tot_b, tot_tp, tot_pc = b.sum() + self._edge_bits(qp_i, offsets), tp.sum(), pc.sum()
        per_step = self.edge_bits_per_step(qp_i)
        out = np.empty(b.shape + (len(candidates),))
        for j, cand in enumerate(candidates):
            bj, tpj, pcj, _ = self._per_ctu(qp_i, np.full_like(np.asarray(offsets), cand))
            if per_step:
                bj = bj + per_step * edge_steps_change(offsets, cand)
            miou = scores_from_counts(tot_tp - tp + tpj, tot_pc - pc + pcj, self.ref_count, self.n_voxels)["miou"]
            out[..., j] = reward((tot_b - b + bj) / self.bits_ref, self.original_miou - miou, lam)
        return out

    # ---------------------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> None:
        np.savez_compressed(
            path, keys=np.asarray(self.keys, dtype=np.int32), frame_bits=self.frame_bits, share=self.share,
            tp=self.tp, pc=self.pc, sse=self.sse.astype(np.float32),
            scalars=np.asarray([self.ref_count, self.n_voxels, self.original_miou, self.bits_ref],
                               np.float64),
            shape=np.asarray(self.shape), space=np.asarray(self.space_name), meta=np.asarray(repr(self.meta)))

    @classmethod
    def load(cls, path: str | Path) -> "ClipCache":
        z = np.load(path, allow_pickle=False)
        ref_count, n_vox, omiou, bits_ref = z["scalars"].tolist()
        keys = [tuple(int(v) for v in k) for k in z["keys"]]
        return cls(str(z["space"]), keys, z["frame_bits"], z["share"],
                   z["tp"], z["pc"], z["sse"].astype(np.float64), int(ref_count), int(n_vox), float(omiou),
                   float(bits_ref), tuple(int(v) for v in z["shape"]), {"meta": str(z["meta"])})


def random_decision(space: ActionSpace, foreground: np.ndarray, rng: np.random.Generator,
                    qp_i: int | None = None) -> tuple[int, np.ndarray]:
    """A random valid decision: QP_I uniform over the space, each CTU's offset uniform over its set."""
    if qp_i is None:
        qp_i = int(rng.choice(space.qp_i))
    valid = space.ctu_action_mask(foreground)
    u = rng.random(valid.shape) * valid
    actions = np.argmax(u, axis=-1)
    return qp_i, space.offset_of(actions)


def surrogate_error(volume: Volume, segmenter: Segmenter, reference: TaskReference, cache: ClipCache,
                    decisions: Sequence[tuple[int, np.ndarray]], lam: float = 10.0, *,
                    setup: CodingSetup = TASK_CODING, space: ActionSpace | None = None) -> list[dict[str, float]]:
    """Surrogate vs real encode for each decision: rows of bits, mIoU, drop and reward, both ways.

    ``space``: the cache's action space when it is not a registered one (default: by its name).
    """
    env = RealEnv(volume, segmenter, reference=reference, setup=setup, space=space or cache.space_name)
    env._bits_ref = cache.bits_ref
    rows = []
    for qp_i, offsets in decisions:
        real = env.step(qp_i, offsets, lam)
        sur = cache.evaluate(qp_i, offsets, lam)
        rows.append({"qp_i": qp_i, "mean_offset": float(np.mean(offsets)),
                     "bits_real": real.bits, "bits_sur": sur.bits,
                     "bits_rel_err": sur.bits / real.bits - 1.0,
                     "miou_real": real.miou, "miou_sur": sur.miou, "miou_err": sur.miou - real.miou,
                     "vessel_iou_real": real.vessel_iou, "vessel_iou_sur": sur.vessel_iou,
                     "reward_real": real.reward, "reward_sur": sur.reward,
                     "psnr_real": real.psnr_hu, "psnr_sur": sur.psnr_hu})
    return rows
