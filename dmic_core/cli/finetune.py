"""``dmic finetune``: few-shot tuning of the pretrained agents on labelled target volumes."""

from __future__ import annotations

import sys
from pathlib import Path

from dmic_core.cli.common import print_json


def register(subparsers) -> None:
    from dmic_core.agents.strategies import ADVANTAGES, DEFAULT_STRATEGY, STRATEGY_NAMES
    from dmic_core.defaults import PRETRAINED_AGENTS

    parser = subparsers.add_parser(
        "finetune", help="few-shot tuning of the DMIC agents (paper's 8 strategies, K:10:10 split)")
    parser.add_argument("--data", required=True, help="ImageCAS-layout folder ({id}.img/.label.nii.gz) or dataset CSV")
    parser.add_argument("--shots", type=int, default=1, help="K labelled training volumes (1, 3, 5); batch size K")
    parser.add_argument("--strategy", default=DEFAULT_STRATEGY, choices=STRATEGY_NAMES, help="what is tuned (paper Fig. 1)")
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--out", required=True, type=Path, help="checkpoint to write (.pt)")
    parser.add_argument("--from", dest="pretrained", default=None,
                        help=f"agents to start from (default assets/{PRETRAINED_AGENTS})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the A2C run")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the K:10:10 split")
    parser.add_argument("--resume", action="store_true", help="continue from OUT.state (else start over)")
    parser.add_argument("--lr-frame", type=float, default=1e-3)
    parser.add_argument("--lr-ctu", type=float, default=1e-4)
    parser.add_argument("--clip-frames", type=int, default=9, help="frames per training clip")
    parser.add_argument("--clips-per-volume", type=int, default=2)
    parser.add_argument("--slab", type=int, default=33, help="heart slab (slices) the clips are taken from")
    parser.add_argument("--preset", default="veryfast", help="x265 preset of the surrogate's encodes")
    parser.add_argument("--segmenter", default="builtin")
    parser.add_argument("--workers", type=int, default=2, help="processes building surrogate caches")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for training")
    parser.add_argument("--val-volumes", type=int, default=0,
                        help="choose the iteration with the best greedy reward on the first N validation volumes "
                             "(surrogate; 0 = keep the last iteration, the paper's protocol)")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--actor-update", choices=ADVANTAGES, default="greedy",
                        help="sampled: the paper's A2C estimate; all_actions / greedy: the surrogate's value of "
                             "every action (greedy reaches the optimum; see dmic_core.agents.a2c)")
    parser.add_argument("--lambda-zero-prob", type=float, default=0.1,
                        help="share of training episodes at lambda = 0")
    parser.add_argument("--rate-edge-bits", type=float, default=0.0,
                        help="surrogate's mixed-QP rate correction: bits per offset step between neighbouring "
                             "CTUs at QP_I 32 (bench/surrogate_rate_fit.py fits it; 0: none)")
    parser.add_argument("--rate-edge-halving", type=float, default=6.0,
                        help="QPs over which that cost doubles towards finer QP_I")
    parser.add_argument("--rate-qp-cap", type=int, default=None,
                        help="surrogate's rate saturation: CTUs coarser than this paper QP are priced at it")
    parser.add_argument("--quiet", action="store_true")
    parser.set_defaults(func=run)


def run(args) -> int:
    from dmic_core.finetune.config import DEFAULT_CACHE_DIR, FinetuneConfig
    from dmic_core.finetune.tune import finetune

    cfg = FinetuneConfig(data=str(args.data), shots=args.shots, strategy=args.strategy, iterations=args.iterations,
                         pretrained=args.pretrained, split_seed=args.split_seed, seed=args.seed,
                         lr_frame=args.lr_frame, lr_ctu=args.lr_ctu, clip_frames=args.clip_frames,
                         clips_per_volume=args.clips_per_volume, slab=args.slab,
                         preset=None if args.preset in ("", "none", "default") else args.preset,
                         segmenter=args.segmenter, workers=args.workers, threads=args.threads,
                         cache_dir=str(args.cache_dir or DEFAULT_CACHE_DIR), val_volumes=args.val_volumes,
                         actor_update=args.actor_update, lambda_zero_prob=args.lambda_zero_prob,
                         rate_edge_bits=args.rate_edge_bits, rate_edge_halving=args.rate_edge_halving,
                         rate_qp_cap=args.rate_qp_cap)

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    from dmic_core.finetune.files import run_paths

    run_paths(args.out)["cancel"].unlink(missing_ok=True)  # a cancel of an earlier run is stale now
    result = finetune(cfg, args.out, resume=args.resume, log=log)
    print_json(result.to_dict())
    return 0 if result.status == "done" else 130
