"""``dmic pretrain``: pretrain the frame and CTU agents on the source domain (resumable)."""

from __future__ import annotations

import sys
from pathlib import Path

from dmic_core.cli.common import print_json
from dmic_core.datasets.seeds import parse_seeds


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "pretrain", help="pretrain the RL agents on the source domain (phantoms, lumen-threshold task)")
    parser.add_argument("--out", required=True, type=Path, help="agents checkpoint to write (.pt)")
    parser.add_argument("--seeds", default="5001:5013", type=parse_seeds,
                        help="source phantom seeds, A:B or a,b,c")
    parser.add_argument("--slices", type=int, default=9, help="frames per source clip")
    parser.add_argument("--crop", type=int, default=256,
                        help="central crop of each source clip (multiple of 64; 0 keeps whole frames)")
    parser.add_argument("--space", default="paper", choices=["paper", "extended"])
    parser.add_argument("--preset", default="veryfast",
                        help="x265 preset of the surrogate's encodes ('default': the task coding's)")
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=8, help="clips (episodes) per iteration")
    parser.add_argument("--lr-frame", type=float, default=3e-4,
                        help="(fine-tuning uses the paper's 1e-3 frame / 1e-4 CTU)")
    parser.add_argument("--lr-ctu", type=float, default=3e-4)
    parser.add_argument("--entropy-frame", type=float, default=0.03)
    parser.add_argument("--entropy-ctu", type=float, default=0.01)
    parser.add_argument("--ctu-grad-samples", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--cache-dir", default=None, help="where surrogate caches are kept")
    parser.add_argument("--no-resume", action="store_true", help="start over even if OUT.state exists")
    parser.set_defaults(func=run)


def run(args) -> int:
    from dmic_core.agents.a2c import A2CConfig
    from dmic_core.agents.train import DEFAULT_CACHE_DIR, PretrainConfig, pretrain

    a2c = A2CConfig(iterations=args.iterations, batch_clips=args.batch, lr_frame=args.lr_frame,
                    lr_ctu=args.lr_ctu,
                    entropy_coef_frame=args.entropy_frame, entropy_coef_ctu=args.entropy_ctu,
                    ctu_grad_samples=args.ctu_grad_samples, strategy="full", seed=args.seed,
                    threads=args.threads)
    cfg = PretrainConfig(seeds=tuple(args.seeds), n_slices=args.slices, crop=args.crop or None,
                         space=args.space, preset=None if args.preset == "default" else args.preset,
                         cache_dir=str(args.cache_dir or DEFAULT_CACHE_DIR), a2c=a2c)
    if args.no_resume:
        for suffix in (".state",):
            state = args.out.with_suffix(args.out.suffix + suffix)
            if state.exists():
                state.unlink()
        log = args.out.with_suffix(".log.jsonl")
        if log.exists():
            log.unlink()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    agents = pretrain(cfg, args.out, resume=not args.no_resume, log=log)
    from dmic_core.agents.policies import count_parameters

    print_json({"out": str(args.out), "iterations": args.iterations, "space": args.space,
                "seeds": list(args.seeds), "parameters": {"frame": count_parameters(agents.frame),
                                                          "ctu": count_parameters(agents.ctu)}})
    return 0
