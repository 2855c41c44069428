"""Table IV on an idle machine: agent decision, encode and decode seconds for one 33-frame test slab.

    OMP_WAIT_POLICY=PASSIVE python docs/results/transfer/timing.py
"""
import json
import time
from pathlib import Path

import numpy as np
import torch

from dmic_core.codecs.qp import hm_anchor_frame_qps
from dmic_core.pipeline import TASK_CODING, code_volume
from dmic_core.evaluation import load_case

HERE = Path(__file__).parent
ROOT = HERE.parents[2]


def main() -> None:
    torch.set_num_threads(2)
    data = ROOT / "work_dirs/experiments/target_phantoms"
    case = load_case(data / "phantom-7019.img.nii.gz", data / "phantom-7019.label.nii.gz", "builtin", (155, 188))
    rows = []
    from dmic_core.agents.dmic import DMICAgents

    for name, path in (("DMIC shipped (full, 1 shot)", ROOT / "assets/agents_dmic.pt"),
                       ("DMIC tune A2C (1 shot, 1000 it)",
                        ROOT / "work_dirs/experiments/checkpoints/s0/a2c-k1-it1000.pt")):
        agents = DMICAgents.load(path).eval()
        agents.decide(case.volume.hu, case.reference.roi, 10.0)  # warm-up
        t0 = time.perf_counter()
        d = agents.decide(case.volume.hu, case.reference.roi, 10.0)
        decide = time.perf_counter() - t0
        coded = code_volume(case.volume, frame_qps=d.frame_qps, ctu_dqp=d.offsets, setup=TASK_CODING)
        rows.append({"method": name, "lambda": 10.0, "qp_i": d.qp_i, "agent_decision_s": decide,
                     "encode_s": coded.encode.encode_seconds, "decode_s": coded.encode.decode_seconds,
                     "bits": int(coded.encode.total_bits)})
    for qp in (27, 32):
        coded = code_volume(case.volume, frame_qps=hm_anchor_frame_qps(qp, case.volume.n_frames), setup=TASK_CODING)
        rows.append({"method": f"HEVC constant QP {qp}", "agent_decision_s": 0.0, "encode_s": coded.encode.encode_seconds,
                     "decode_s": coded.encode.decode_seconds, "bits": int(coded.encode.total_bits)})
    out = {"volume": "phantom-7019 [155:188], 33 x 512 x 512", "torch_threads": 2,
           "load_avg": list(np.round(__import__("os").getloadavg(), 2)), "rows": rows}
    (HERE / "timing_idle.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
