"""``dmic segment-train``: train the built-in coronary segmenter (phantoms or ImageCAS), resumable."""

from __future__ import annotations

from pathlib import Path

from dmic_core.cli.common import print_json
from dmic_core.errors import DmicInputError


def _channels(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(c) for c in text.split(","))
    except ValueError as exc:
        raise ValueError(f"channels must look like 16,32,64, got {text!r}") from exc


def register(subparsers) -> None:
    from dmic_core.segmentation.config import TrainConfig

    d = TrainConfig()
    parser = subparsers.add_parser("segment-train", help="train the built-in coronary-artery segmenter")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--data", help="ImageCAS-layout folder ({id}.img.nii.gz + {id}.label.nii.gz)")
    src.add_argument("--seeds", default=None, metavar="A:B",
                     help=f"phantom seeds to train on (default {d.train_seeds[0]}:{d.train_seeds[-1] + 1})")
    parser.add_argument("--val-seeds", default=None, metavar="C:D",
                        help=f"held-out phantom seeds (default {d.val_seeds[0]}:{d.val_seeds[-1] + 1})")
    parser.add_argument("--out", required=True, type=Path, help="weights file (best validation Dice)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="checkpoint (default work_dirs/checkpoints/OUT-STEM.ckpt)")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    parser.add_argument("--steps", type=int, default=d.steps, help="total optimisation steps")
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--patch", type=int, default=d.patch, help="patch side in pixels")
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--in-slices", type=int, default=d.in_slices, help="adjacent frames in (odd)")
    parser.add_argument("--channels", type=_channels, default=d.channels, metavar="C1,C2,...")
    parser.add_argument("--stem-factor", type=int, default=d.stem_factor, choices=[1, 2, 4])
    parser.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    parser.add_argument("--val-every", type=int, default=d.val_every)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--cache-dir", default=d.cache_dir, help="where generated phantoms are cached")
    parser.add_argument("--real-fraction", type=float, default=d.real_fraction,
                        help="share of patches cut from the real CT crop's training frames with synthetic "
                             "coronaries on its heart surface (dmic_core.segmentation.composite); 0: phantoms only")
    parser.add_argument("--real-crop", default=None, help="folder of the real crop (default: shared data cta-aorta-crop)")
    parser.add_argument("--init", default=None, help="start from these weights (fine-tuning)")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def run(args) -> int:
    from dmic_core.segmentation.config import TrainConfig
    from dmic_core.segmentation.train import parse_seed_range, train

    for name in ("steps", "batch_size", "patch", "checkpoint_every", "val_every"):
        if getattr(args, name) < 1:
            raise DmicInputError(f"--{name.replace('_', '-')} must be >= 1")
    if args.data and not Path(args.data).is_dir():
        raise DmicInputError("not a folder", args.data)
    kwargs = {}
    try:
        if args.seeds:
            kwargs["train_seeds"] = tuple(parse_seed_range(args.seeds))
        if args.val_seeds:
            kwargs["val_seeds"] = tuple(parse_seed_range(args.val_seeds))
    except ValueError as exc:
        raise DmicInputError(str(exc)) from None
    if set(kwargs.get("train_seeds", ())) & set(kwargs.get("val_seeds", ())):
        raise DmicInputError("training and validation seeds overlap")
    cfg = TrainConfig(data_dir=args.data, steps=args.steps, batch_size=args.batch_size, patch=args.patch,
                      lr=args.lr, in_slices=args.in_slices, channels=tuple(args.channels),
                      stem_factor=args.stem_factor, checkpoint_every=args.checkpoint_every,
                      val_every=args.val_every, seed=args.seed, threads=args.threads,
                      cache_dir=args.cache_dir, real_fraction=args.real_fraction, real_crop=args.real_crop,
                      init_weights=args.init, **kwargs)
    try:
        cfg.net()
    except ValueError as exc:
        raise DmicInputError(str(exc)) from None
    from dmic_core.segmentation.train import default_checkpoint

    if args.resume and not (args.checkpoint or default_checkpoint(args.out)).is_file():
        raise DmicInputError("--resume: no checkpoint to continue from", args.checkpoint or args.out)
    summary = train(cfg, args.out, checkpoint=args.checkpoint, resume=args.resume,
                    progress=not args.no_progress)
    print_json(summary)
    return 0
