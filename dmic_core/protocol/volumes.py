"""The evaluation volumes of the agents' protocol: reserved phantoms and the real CT at CCTA geometry.

* 12 phantoms from :data:`dmic_core.datasets.seeds.EVALUATION_SEEDS` (never trained on, never
  used to choose a model, seed or setting), each coded as the 33-slice slab centred on its
  coronary label, scored against that label;
* the shared real CT crop (``../shared/data/cta-aorta-crop``) zoomed in-plane from 1.5 mm to
  0.375 mm (ImageCAS-like pixels, 8 x 8 CTUs instead of 2 x 2, so CTU-level methods have
  background CTUs to work with; zooming adds no detail), scored against the segmentation of the
  original: it has no coronary labels. Its slab is the first 33 of the crop's held-out frames
  (:data:`~dmic_core.segmentation.realdata.EVAL_FRAMES`): the heart base with the aortic root,
  where the coronary arteries leave the aorta. The segmenters drew real texture from the frames
  below (``TRAIN_FRAMES``); until 2026-12-01 the protocol coded frames 60-93, inside them.

Volumes are written once under a work folder and reused, so a protocol run resumes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from dmic_core.datasets.seeds import EVALUATION_SEEDS
from dmic_core.defaults import shared_data_dir
from dmic_core.segmentation.realdata import EVAL_FRAMES

if TYPE_CHECKING:
    from dmic_core.runs import CaseSpec

#: Frames per evaluation slab (the paper's clips and the agents' decision benchmark).
SLAB = 33
#: Real CT: the first slab of the crop's held-out heart frames (the heart base and aortic root),
#: never sampled by the segmenters' training (:mod:`dmic_core.segmentation.realdata`).
REAL_CT_SLICES = (EVAL_FRAMES[-1][0], EVAL_FRAMES[-1][0] + SLAB)
#: In-plane zoom of the real crop: 1.5 mm -> 0.375 mm.
REAL_CT_ZOOM = 4


@dataclass(frozen=True)
class EvaluationVolume:
    """One volume of the protocol: files, the slab coded, and what accuracy is measured against."""

    name: str
    image: str
    label: str | None
    slices: tuple[int, int]
    reference: str  # "label" or "segmentation of the original"
    #: a mask file that replaces the segmenter's mask of the original as the region the methods
    #: protect (e.g. a post-processed mask under study); None: the segmenter's own
    roi: str | None = None

    def case_spec(self, segmenter: str = "builtin") -> "CaseSpec":
        """The runner's case of this volume, scored and masked by ``segmenter`` (the plan's)."""
        from dmic_core.runs import CaseSpec

        return CaseSpec(self.image, self.label, segmenter, tuple(self.slices), self.roi)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def phantom_volume(seed: int, data_dir: Path) -> EvaluationVolume:
    """The phantom of ``seed`` (generated once) and its 33-slice slab centred on the coronary label."""
    from dmic_core.datasets.phantom import generate_phantom, write_imagecas_pair
    from dmic_core.io import load_label, load_volume

    name = f"phantom-{seed}"
    image, label = data_dir / f"{name}.img.nii.gz", data_dir / f"{name}.label.nii.gz"
    if not (image.is_file() and label.is_file()):
        data_dir.mkdir(parents=True, exist_ok=True)
        volume, mask = generate_phantom(seed)
        write_imagecas_pair(volume, mask, data_dir, name)
    volume = load_volume(image)
    per_slice = (load_label(label, like=volume) > 0).sum(axis=(1, 2))
    middle = int(np.searchsorted(np.cumsum(per_slice) / per_slice.sum(), 0.5))
    start = max(0, min(middle - SLAB // 2, volume.n_frames - SLAB))
    return EvaluationVolume(name, str(image), str(label), (start, start + SLAB), "label")


def real_ct_ccta(data_dir: Path, factor: int = REAL_CT_ZOOM) -> EvaluationVolume:
    """The shared real CT crop zoomed in-plane by ``factor`` (linear), world frame kept."""
    import nibabel as nib
    from scipy.ndimage import zoom

    source = shared_data_dir() / "cta-aorta-crop" / "ct.nii.gz"
    out = data_dir / f"ct-aorta-crop-x{factor}.nii.gz"
    if not out.is_file():
        if not source.is_file():
            raise FileNotFoundError(f"real CT not found at {source} (set DMIC_SHARED_DATA)")
        image = nib.load(str(source))
        data = np.asarray(image.dataobj).astype(np.float32)
        zoomed = np.rint(zoom(data, (factor, factor, 1), order=1, grid_mode=True, mode="nearest"))
        affine = image.affine.copy()
        affine[:3, :2] /= factor
        # keep the first voxel's outer corner: the centre moves by half the old minus half the new pixel
        affine[:3, 3] -= affine[:3, :2] @ np.full(2, (factor - 1) / 2.0)
        data_dir.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(zoomed.astype(np.int16), affine), str(out))
    return EvaluationVolume(f"ct-aorta-crop-x{factor}", str(out), None, REAL_CT_SLICES,
                            "segmentation of the original")


def evaluation_volumes(data_dir: str | Path, seeds: Sequence[int] = EVALUATION_SEEDS,
                       real_ct: bool = True) -> list[EvaluationVolume]:
    """The protocol's volumes (phantoms of ``seeds``, then the real CT when available)."""
    data_dir = Path(data_dir)
    volumes = [phantom_volume(int(s), data_dir) for s in seeds]
    if real_ct and (shared_data_dir() / "cta-aorta-crop" / "ct.nii.gz").is_file():
        volumes.append(real_ct_ccta(data_dir))
    return volumes


__all__ = ["EvaluationVolume", "REAL_CT_SLICES", "SLAB", "evaluation_volumes", "phantom_volume",
           "real_ct_ccta"]
