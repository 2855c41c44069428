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
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

from dmic_core.protocol.volumes import SLAB, EvaluationVolume

if TYPE_CHECKING:
    import pandas as pd

#: Frame offsets of the extra slabs: the 33 frames below and above a volume's slab.
SLAB_OFFSETS: tuple[int, ...] = (-SLAB, SLAB)


@functools.lru_cache(maxsize=None)
def _frames(image: str) -> int:
    from dmic_core.io import load_volume

    return load_volume(image).n_frames


def slab_variants(volumes: Sequence[EvaluationVolume], offsets: Sequence[int], work: Path,
                  label_region: bool = False) -> dict[int, list[EvaluationVolume]]:
    """Per offset, each labelled volume with its slab moved by ``offset`` frames (kept inside the
    volume), under a linked image path: the runner tells volumes apart by their image file, and a
    moved volume is named ``<name>+slab<offset>``. With ``label_region`` the methods protect the
    label's CTUs instead of the segmenter's (a bound, named ``...+label``)."""
    out = {}
    for offset in offsets:
        moved = []
        for vol in volumes:
            if vol.label is None:
                continue
            frames = _frames(vol.image)
            start = max(0, min(vol.slices[0] + offset, frames - SLAB))
            name = f"{vol.name}+slab{offset:+d}" + ("+label" if label_region else "")
            link = Path(work) / "volumes" / f"{name}.img.nii.gz"
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(Path(vol.image).resolve())
            moved.append(EvaluationVolume(name, str(link), vol.label, (start, start + SLAB), vol.reference,
                                          vol.label if label_region else None))
        out[offset] = moved
    return out


def plain_volume(name: "pd.Series") -> "pd.Series":
    """The volume a moved slab's name belongs to (``phantom-9000+slab-33`` -> ``phantom-9000``)."""
    return name.str.split("+").str[0]


def pooled(points: Mapping[str, "pd.DataFrame"]) -> "pd.DataFrame":
    """One curve per (volume, curve) from several slabs' points of the same setting: bits summed
    (bpp averaged, the slabs are the same size) and mIoU averaged. A setting missing on any slab is
    left out, so every pooled point covers the same frames."""
    import pandas as pd

    frames = [rows.assign(volume=plain_volume(rows.volume), slab=slab) for slab, rows in points.items()]
    every = pd.concat(frames, ignore_index=True)
    counts = every.groupby(["volume", "curve", "setting"]).slab.nunique()
    complete = counts[counts == len(points)].index
    every = every.set_index(["volume", "curve", "setting"]).loc[complete].reset_index()
    return (every.groupby(["volume", "curve", "setting"], as_index=False)
            .agg(bpp=("bpp", "mean"), miou=("miou", "mean"), psnr_hu=("psnr_hu", "mean"), method=("method", "first")))


__all__ = ["SLAB_OFFSETS", "plain_volume", "pooled", "slab_variants"]
