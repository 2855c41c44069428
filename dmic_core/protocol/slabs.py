"""More than one slab per volume: the same volume's neighbouring 33-frame slabs, and curves pooled over them.

A volume's BD-rate measured on one 33-frame slab wobbles by about 15 points (the constant-QP
anchor against itself on a grid shifted by 2 QPs, ``bench/protocol_noise.py``): the U-Net's
mIoU of a decoded slab jumps between neighbouring QPs. Pooling the protocol's slab with the 33
frames above and below it (bits summed, mIoU averaged at each setting) cuts that SD to about 6
points (``bench/slab_pooling.py``). These helpers build the moved slabs and pool their points,
for the evaluation benches and for choosing on validation volumes alike.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from dmic_core.protocol.volumes import SLAB, EvaluationVolume

if TYPE_CHECKING:
    import pandas as pd

    from dmic_core.protocol.run import ProtocolPlan

#: Frame offsets of the extra slabs: the 33 frames below and above a volume's slab.
SLAB_OFFSETS: tuple[int, ...] = (-SLAB, SLAB)


@functools.lru_cache(maxsize=None)
def _frames(image: str) -> int:
    from dmic_core.io import load_volume

    return load_volume(image).n_frames


def slab_name(volume: str, offset: int, label_region: bool = False) -> str:
    """The name of ``volume``'s slab moved by ``offset`` frames (``phantom-9000+slab-33``; ``+label``
    when the methods protect the label's CTUs)."""
    return f"{volume}+slab{offset:+d}" + ("+label" if label_region else "")


def moved_slab(slices: Sequence[int], offset: int, frames: int) -> tuple[int, int]:
    """The 33-frame slab ``offset`` frames from ``slices``, kept inside a volume of ``frames`` frames."""
    start = max(0, min(slices[0] + offset, frames - SLAB))
    return start, start + SLAB


def slab_variants(volumes: Sequence[EvaluationVolume], offsets: Sequence[int], work: Path,
                  label_region: bool = False) -> dict[int, list[EvaluationVolume]]:
    """Per offset, each labelled volume with its slab moved by ``offset`` frames (kept inside the
    volume), under a linked image path: the runner tells volumes apart by their image file, and a
    moved volume is named ``<name>+slab<offset>``. With ``label_region`` the methods protect the
    label's CTUs instead of the segmenter's (a bound, named ``...+label``); without it a volume's
    own region file (:attr:`EvaluationVolume.roi`, e.g. a mask rule under study) moves with it."""
    out = {}
    for offset in offsets:
        moved = []
        for vol in volumes:
            if vol.label is None:
                continue
            name = slab_name(vol.name, offset, label_region)
            link = Path(work) / "volumes" / f"{name}.img.nii.gz"
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(Path(vol.image).resolve())
            moved.append(EvaluationVolume(name, str(link), vol.label, moved_slab(vol.slices, offset, _frames(vol.image)),
                                          vol.reference,
                                          vol.label if label_region else vol.roi))
        out[offset] = moved
    return out


def plain_name(name: str) -> str:
    """The volume a moved slab's name belongs to (``phantom-9000+slab-33`` -> ``phantom-9000``)."""
    return name.split("+")[0]


def plain_volume(names: "pd.Series") -> "pd.Series":
    """:func:`plain_name` of every name."""
    return names.map(plain_name)


def pooled(points: Mapping[str, "pd.DataFrame"]) -> "pd.DataFrame":
    """One curve per (volume, curve) from several slabs' points of the same setting: bits summed
    (bpp averaged, the slabs are the same size), mIoU and PSNR averaged, point times summed. Points
    that carry the oracle's ``fg``/``bg`` pool per pair. A setting missing on any slab is left out,
    so every pooled point covers the same frames."""
    import pandas as pd

    frames = [rows.assign(volume=plain_volume(rows.volume), slab=slab) for slab, rows in points.items()]
    every = pd.concat(frames, ignore_index=True)
    keys = ["volume", "curve", "setting"] + [k for k in ("fg", "bg") if k in every]
    groups = every.groupby(keys, dropna=False)
    every = every[groups.slab.transform("nunique") == len(points)]
    aggregate = {"bpp": ("bpp", "mean"), "miou": ("miou", "mean"), "psnr_hu": ("psnr_hu", "mean"),
                 "method": ("method", "first")}
    if "seconds" in every:
        aggregate["seconds"] = ("seconds", "sum")
    return every.groupby(keys, as_index=False, dropna=False).agg(**aggregate)


def slab_plans(plan: "ProtocolPlan", work: Path, offsets: Sequence[int] = SLAB_OFFSETS) -> dict[str, "ProtocolPlan"]:
    """``plan`` on its labelled volumes' moved slabs, one plan per offset (``"-33"``, ``"+33"``):
    the same methods, agents, grids and segmenter. Each has a point log of its own (its slabs key
    the fingerprint), so a rerun codes only what is missing."""
    return {f"{offset:+d}": replace(plan, volumes=moved)
            for offset, moved in slab_variants(plan.volumes, offsets, work).items()}


def pooled_protocol_rows(rows: list[dict[str, Any]], moved: Mapping[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The protocol's rows with every labelled volume's curves pooled over its slabs (``rows``: the
    protocol's own slab; ``moved``: each moved slab's rows). A volume without moved slabs (the real
    CT, which has no label outside its heart slab) keeps its single slab's rows."""
    import pandas as pd

    every = pd.DataFrame(rows)
    if not moved or every.empty:
        return rows
    names = {plain_name(r["volume"]) for slab in moved.values() for r in slab}
    has_slabs = plain_volume(every.volume).isin(names)  # a variant's name (``<volume>+cc500``) too
    single = every[~has_slabs]
    points = {"0": every[has_slabs], **{k: pd.DataFrame(v) for k, v in moved.items()}}
    three = pooled(points)
    return pd.concat([single, three], ignore_index=True).to_dict(orient="records")


__all__ = ["SLAB_OFFSETS", "moved_slab", "plain_name", "plain_volume", "pooled", "pooled_protocol_rows", "slab_name", "slab_plans",
           "slab_variants"]
