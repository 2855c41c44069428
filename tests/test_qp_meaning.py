"""A paper QP means one quantisation step in HU, whatever the bit depth: measured with real encodes.

HEVC scales its quantiser with the bit depth, so the same QP over the same HU window gives the
same HU error at 8, 10 and 12 bits, and a 4x wider window needs 12 QP less for the same HU step.
This is the fact ``dmic_core.codecs.qp.qp_shift`` rests on.
"""

from __future__ import annotations

import numpy as np
import pytest

from dmic_core.codecs.qp import paper_to_coded_qp
from dmic_core.defaults import shared_data_dir
from dmic_core.io import load_volume
from dmic_core.pipeline import CodingSetup, code_volume

REAL_CT = shared_data_dir() / "cta-aorta-crop" / "ct.nii.gz"
pytestmark = pytest.mark.skipif(not REAL_CT.is_file(), reason=f"shared real CT not found at {REAL_CT}")


@pytest.fixture(scope="module")
def slab():
    return load_volume(REAL_CT).slab(70, 76)


def in_window_error(slab, setup: CodingSetup, paper_qp: int) -> float:
    coded = code_volume(slab, frame_qps=np.full(slab.n_frames, paper_qp), setup=setup)
    inside = (slab.hu > -150) & (slab.hu < 780)  # well inside every window used below
    return float(np.abs(coded.recon.hu.astype(int) - slab.hu)[inside].mean())


def test_same_window_same_hu_error_at_every_bit_depth(slab):
    errors = [in_window_error(slab, CodingSetup(bit_depth=b, window=(-200.0, 824.0)), 22) for b in (8, 10, 12)]
    assert max(errors) / min(errors) < 1.1, errors


def test_paper_qp_gives_same_hu_error_over_full_range_and_ccta_window(slab):
    full = in_window_error(slab, CodingSetup(bit_depth=12), 22)  # coded QP 10
    ccta = in_window_error(slab, CodingSetup(bit_depth=8, window=(-200.0, 824.0)), 22)  # coded QP 22
    naive = in_window_error(slab, CodingSetup(bit_depth=12), 22 + 24)  # what "+12 at 12 bits" would code (34)
    assert paper_to_coded_qp(22, 12, 4096.0) == 10
    assert abs(full - ccta) / ccta < 0.15, (full, ccta)
    assert naive > 2.5 * ccta, (naive, ccta)
