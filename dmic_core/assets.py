"""Shipped model weights: where they live and a check that they are intact.

Weights are trained on this project's own data and committed under ``assets/`` with a model
card each; nothing is ever downloaded. ``assets/manifest.json`` lists every file with its
SHA-256 and the command that reproduces it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from dmic_core.defaults import DEFAULT_AGENTS

ASSETS_DIR = Path(os.environ.get("DMIC_ASSETS_DIR", Path(__file__).resolve().parent.parent / "assets"))
MANIFEST = "manifest.json"
#: The shipped agent checkpoints a user can choose for DMIC jobs (measured results in their model
#: cards and ``docs/results/``); which one is the default is :data:`dmic_core.defaults.DEFAULT_AGENTS`.
SHIPPED_AGENTS = {
    "agents_dmic.pt": "paper action space, vessel CTUs never coarser than the frame QP, tuned on coronary phantoms",
    "agents_extended.pt": "extended action space (coarser background, lower PSNR), tuned on coronary phantoms",
    "agents_pretrained.pt": "paper action space, source-domain pretraining only",
}


def asset_path(name: str) -> Path:
    """Path of a shipped asset, with a clear error when it is missing."""
    path = ASSETS_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"shipped asset {name} is missing from {ASSETS_DIR}; "
                                f"see {ASSETS_DIR / MANIFEST} for the command that reproduces it")
    return path


def shipped_agents() -> list[tuple[str, Path, str]]:
    """``(name, path, description)`` of the shipped agent checkpoints present, the default first."""
    names = sorted(SHIPPED_AGENTS, key=lambda n: n != DEFAULT_AGENTS)
    return [(name, ASSETS_DIR / name, SHIPPED_AGENTS[name] + (" (default)" if name == DEFAULT_AGENTS else ""))
            for name in names if (ASSETS_DIR / name).is_file()]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_manifest() -> dict[str, dict[str, str]]:
    path = ASSETS_DIR / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else {}


def check_assets() -> list[str]:
    """Problems with the shipped assets (missing or altered files); empty when all is well."""
    problems = []
    for name, entry in load_manifest().items():
        path = ASSETS_DIR / name
        if not path.is_file():
            problems.append(f"{name}: missing (reproduce with: {entry['reproduce']})")
        elif sha256(path) != entry["sha256"]:
            problems.append(f"{name}: checksum differs from the manifest (re-run: {entry['reproduce']})")
    return problems


def main() -> int:
    problems = check_assets()
    for problem in problems:
        print(f"[assets] {problem}")
    if not problems:
        print(f"[assets] {len(load_manifest())} shipped model file(s) verified")
    return 1 if problems else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
