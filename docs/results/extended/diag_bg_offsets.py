"""Where the mIoU of a coarse background goes: U-Net TP/FP/FN split by foreground/background CTU.

    python docs/results/extended/diag_bg_offsets.py   # phantom 7001, slab 141:174 (bench/sweep_report.py makes the data)
Output: docs/results/extended/diag_bg_offsets.log (the table in docs/results/sweeps.md).
"""
import json, os, sys
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, ROOT)
import numpy as np, torch
torch.set_num_threads(1)
from dmic_core.evaluation import load_case
from dmic_core.pipeline import code_volume, TASK_CODING
from dmic_core.codecs.qp import dmic_frame_qps, hm_anchor_frame_qps
from dmic_core.maps import foreground_ctus, mask_ctu_dqp
case = load_case(ROOT + "/work_dirs/sweeps/data/phantom-7001.img.nii.gz", ROOT + "/work_dirs/sweeps/data/phantom-7001.label.nii.gz", slices=(141,174))
n = case.volume.n_frames
fg = foreground_ctus(case.reference.roi)
fgpix = np.kron(fg, np.ones((1,64,64),bool))[:, :512, :512]
ref = case.reference.reference > 0
def stats(name, fq, dqp):
    c = code_volume(case.volume, frame_qps=fq, ctu_dqp=dqp, setup=TASK_CODING)
    p = np.asarray(case.segmenter.segment(c.recon)) > 0
    tp_fg = (p & ref & fgpix).sum(); tp_bg = (p & ref & ~fgpix).sum()
    fp_fg = (p & ~ref & fgpix).sum(); fp_bg = (p & ~ref & ~fgpix).sum()
    fn_fg = (~p & ref & fgpix).sum(); fn_bg = (~p & ref & ~fgpix).sum()
    print(name, "bits", c.encode.total_bits, "TP fg/bg", tp_fg, tp_bg, "FP fg/bg", fp_fg, fp_bg, "FN fg/bg", fn_fg, fn_bg, flush=True)
o = case.reference.roi > 0
print("orig: ref in fg-CTU pixels", (ref & fgpix).sum(), "ref in bg", (ref & ~fgpix).sum(), "roi FP", (o & ~ref).sum(), "fg CTU frac", fg.mean())
stats("hevc32", hm_anchor_frame_qps(32, n), None)
stats("twolevel+20 @27", dmic_frame_qps(27, n), mask_ctu_dqp(case.reference.roi, 0, 20))
stats("twolevel+8 @27", dmic_frame_qps(27, n), mask_ctu_dqp(case.reference.roi, 0, 8))
stats("twolevel+14 @27", dmic_frame_qps(27, n), mask_ctu_dqp(case.reference.roi, 0, 14))
