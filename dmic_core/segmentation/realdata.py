"""The one real CT the project has (``cta-aorta-crop``) as segmenter training and evaluation data.

The TotalSegmentator aorta crop (1.5 mm isotropic, 164 axial frames, arterial phase, with heart,
aorta, pulmonary-artery and branch masks) has no coronary labels. It is used two ways:

* **evaluation**: :func:`load_crop` + :mod:`.plausibility` give false-vessel volumes;
* **training texture** (:mod:`.composite`): real slices with synthetic coronary trees placed on
  the heart surface, and real negatives (lung, aorta, bone, below-heart slabs).

The split is by z (canonical frame index, 0 = most inferior, 1.5 mm per frame), with gaps of at
least 6 frames (9 mm) so that no training frame neighbours an evaluation frame:

* ``train``: frames 24-93: the liver dome below the heart (24-36) and the lower and middle heart
  (37-93) with lung, ribs, spine and the descending aorta;
* ``eval``: frames 0-17 (abdomen only: the *abdomen proxy*, at least 28 mm below the heart, which
  starts at frame 37) and frames 100-163 (the heart base, aortic root, pulmonary trunk, upper
  lungs, great vessels and neck). Never sampled in training or used to choose a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dmic_core.defaults import shared_data_dir

#: Frame ranges (half-open) of the split.
TRAIN_FRAMES: tuple[tuple[int, int], ...] = ((24, 94),)
EVAL_FRAMES: tuple[tuple[int, int], ...] = ((0, 18), (100, 164))
#: Abdomen-only frames (no heart within 10 mm): the proxy for an abdomen CT, inside ``EVAL_FRAMES``.
ABDOMEN_FRAMES: tuple[int, int] = (0, 18)
#: Masks shipped with the crop: the great-vessel lumens (false-vessel region) and other arteries.
GREAT_VESSELS = ("aorta", "pulmonary_artery")
OTHER_VESSELS = ("brachiocephalic_trunk", "common_carotid_artery_left")


def crop_dir() -> Path:
    return shared_data_dir() / "cta-aorta-crop"


@dataclass
class Crop:
    """The crop on its canonical grid with its masks (bool)."""

    volume: object  # dmic_core.volume.Volume
    heart: np.ndarray
    great_vessels: np.ndarray
    other_vessels: np.ndarray

    @property
    def hu(self) -> np.ndarray:
        return self.volume.hu

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(self.volume.spacing)

    def frames(self, ranges: tuple[tuple[int, int], ...]) -> np.ndarray:
        """Boolean map (on the crop's grid) of the given frame ranges."""
        sel = np.zeros(self.hu.shape, bool)
        for a, b in ranges:
            sel[a:b] = True
        return sel

    def regions(self):
        """:func:`~dmic_core.segmentation.plausibility.anatomy_regions` of the crop (computed once)."""
        from dmic_core.segmentation.plausibility import anatomy_regions

        if getattr(self, "_regions", None) is None:
            self._regions = anatomy_regions(self.hu, self.spacing, heart=self.heart,
                                            great_vessels=self.great_vessels, other_vessels=self.other_vessels)
        return self._regions


def load_crop(folder: str | Path | None = None) -> Crop:
    """Load ``ct.nii.gz`` and its masks (raises ``FileNotFoundError`` when the shared data is absent)."""
    from dmic_core.io import load_label, load_volume

    folder = Path(folder) if folder else crop_dir()
    if not (folder / "ct.nii.gz").is_file():
        raise FileNotFoundError(f"no real CT crop at {folder}")
    vol = load_volume(folder / "ct.nii.gz")

    def union(names: tuple[str, ...]) -> np.ndarray:
        out = np.zeros(vol.shape, bool)
        for n in names:
            if (folder / f"{n}.nii.gz").is_file():
                out |= np.asarray(load_label(folder / f"{n}.nii.gz", vol)) > 0
        return out

    return Crop(vol, union(("heart",)), union(GREAT_VESSELS), union(OTHER_VESSELS))


__all__ = ["TRAIN_FRAMES", "EVAL_FRAMES", "ABDOMEN_FRAMES", "Crop", "load_crop", "crop_dir"]
