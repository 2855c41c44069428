"""Synthetic coronary CT angiography (CCTA) phantoms with coronary-lumen labels, ImageCAS-like.

ImageCAS cannot be downloaded here, so the segmentation model and the RL agents train and test on
these volumes. Each seed draws a :class:`PhantomConfig` (anatomy, contrast, noise, geometry) and
renders a 512 x 512 x N int16 HU volume in canonical LPS frames plus a uint8 label of the coronary
lumen (voxel centres inside the lumen radius, coronary trees only, like ImageCAS).

How it is built (all in mm, LPS, origin at the centre of the field of view), a module per step:

* :mod:`.config` draws every parameter of a phantom from its seed (:class:`PhantomConfig`).
* :mod:`.chest` and :mod:`.heart` paint the large anatomy (body wall, lungs, ribs, spine, heart
  chambers, great vessels, liver dome) at half resolution as soft-edged ellipsoids, capsules and
  ellipses (:mod:`.geometry`: grids, distance fields, the canvas), then it is linearly upsampled:
  edges get a partial-volume ramp of about one low-resolution voxel.
* :mod:`.heart`: the heart lives in its own frame ``(u, v, w)``: ``u`` base->apex, ``v``
  right->left ventricle, ``w`` towards anterior. The ventricular surface is the union of the LV
  and RV epicardial ellipsoids; the crease where they meet is the interventricular groove, and the
  plane where the atria meet the ventricles is the AV groove.
* :mod:`.coronary`: coronary centrelines are walks on that surface (plus smooth wiggle), so they
  sit in the epicardial fat like real ones; coronaries, soft plaque and calcium are drawn at full
  resolution only in small boxes around centreline chunks (capsule distance fields).
* :mod:`.noise`: the whole volume gets a Gaussian PSF and Gaussian-correlated noise scaled to the
  drawn target standard deviation.
* :mod:`.confounders`: optional real-CT confounders (:class:`PhantomOptions`: lung vessel trees,
  dense-contrast streaks, cardiac motion blur, real noise texture), all off by default.
* :mod:`.generate`: the entry points re-exported here, which run those steps in order.
"""

from dmic_core.datasets.phantom.config import (HEART_BASE_SCALE, NOMINAL_SIZE, SLICE_SPACING_MM, TISSUE_CLASSES,
                                               PhantomConfig, PhantomResult)
from dmic_core.datasets.phantom.confounders import PhantomOptions
from dmic_core.datasets.phantom.generate import generate_phantom, render_phantom, write_imagecas_pair

__all__ = ["HEART_BASE_SCALE", "NOMINAL_SIZE", "SLICE_SPACING_MM", "TISSUE_CLASSES", "PhantomConfig", "PhantomOptions",
           "PhantomResult",
           "generate_phantom", "render_phantom", "write_imagecas_pair"]
