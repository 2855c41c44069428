"""Few-shot tuning: split, strategies (what is frozen), checkpoints, resume, CLI.

Training clips get *fabricated* surrogate caches (:func:`fake_cache`, no encodes) so that these
tests stay fast; the real cache path is exercised by ``bench/bench_finetune.py`` and the
experiments run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dmic_core.finetune import FinetuneConfig, clip_windows, finetune, heart_slab, run_paths, split_cases

ROOT = Path(__file__).resolve().parents[1]
HAS_UNET = (ROOT / "assets" / "segmenter_unet.pt").is_file()
needs_unet = pytest.mark.skipif(not HAS_UNET, reason="built-in segmenter weights (assets/segmenter_unet.pt) missing")

#: Trainable parameters of both agents per strategy (docs/agents.md).
EXPECTED_COUNTS = {"pretrained": 0, "a2c": 59392, "a2c_fc": 1895424, "full": 2122576, "adapterv1": 263168,
                   "adapterv1_a2c": 322560, "adapter": 20112, "adapter_critic": 38954}
EXPECTED_MODULES = {
    "pretrained": set(), "a2c": {"a2c"}, "a2c_fc": {"a2c", "fc"}, "full": {"fe", "fc", "a2c"},
    "adapterv1": {"adapters.fc"}, "adapterv1_a2c": {"adapters.fc", "a2c"},
    "adapter": {"adapters.actor", "adapters.critic"}, "adapter_critic": {"adapters.actor", "a2c.critic"},
}


# --- helpers (also used by test_experiments.py) --------------------------------------------------

def fake_cache(hu: np.ndarray, label: np.ndarray, space: str = "paper"):
    """A plausible surrogate without encoding: bits halve every 6 QP, vessels fade above QP 30."""
    from dmic_core.agents.env import RATE_REFERENCE_QP_I, ClipCache, band_pattern, cache_keys, ctu_sums
    from dmic_core.agents.spaces import get_space
    from dmic_core.codecs.qp import p_frame_delta

    sp = get_space(space)
    n, h, w = hu.shape
    keys = cache_keys(sp, n)
    ref = ctu_sums((label > 0).astype(np.int64))
    rows, cols = ref.shape[1:]
    k = len(keys)
    frame_bits = np.array([[2e4 * 2.0 ** (-(s + q - 22) / 6.0) for q in band_pattern(d, n)] for d, s in keys])
    share = np.full((k, n, rows, cols), 1.0 / (rows * cols), np.float32)
    keep = np.array([np.clip(1.0 - max(0, s - 30) / 25.0, 0.0, 1.0) for _, s in keys])
    tp = np.round(ref[None] * keep[:, None, None, None]).astype(np.int32)
    pc = np.repeat(ref[None], k, 0).astype(np.int32)
    sse = np.ones((k, n, rows, cols)) * np.array([2.0 ** (s / 3.0) for _, s in keys])[:, None, None, None]
    d = p_frame_delta(RATE_REFERENCE_QP_I)
    bits_ref = float(frame_bits[keys.index((d, RATE_REFERENCE_QP_I))].sum())
    return ClipCache(sp.name, keys, frame_bits, share, tp, pc, sse, int((label > 0).sum()), int(label.size), 1.0,
                     bits_ref, (n, h, w))


def tiny_dataset(folder: Path, seeds=range(9100, 9104), n_slices: int = 6, size: int = 128) -> Path:
    from dmic_core.datasets.phantom import generate_phantom, write_imagecas_pair

    for s in seeds:
        if not (folder / f"phantom-{s}.img.nii.gz").is_file():
            v, lab = generate_phantom(s, n_slices=n_slices, size=size)
            write_imagecas_pair(v, lab, folder, f"phantom-{s}")
    return folder


def random_pretrained(path: Path) -> Path:
    from dmic_core.agents.dmic import DMICAgents

    torch.manual_seed(0)
    DMICAgents().save(path, meta={"domain": "test: random init"})
    return path


def fabricate_caches(cfg: FinetuneConfig) -> list:
    """Write a fake surrogate at every training clip's cache path of ``cfg``."""
    from dmic_core.finetune.caches import _load_case, clip_specs
    from dmic_core.finetune.config import make_split

    split, cases = make_split(cfg)
    specs = clip_specs(cfg, split, cases)
    for s in specs:
        vol, lab = _load_case(s.image, s.label)
        Path(s.cache_path).parent.mkdir(parents=True, exist_ok=True)
        fake_cache(vol.hu[s.start:s.stop], lab[s.start:s.stop]).save(s.cache_path)
    return specs


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("ft")
    data = tiny_dataset(root / "data")
    return {"root": root, "data": data, "pretrained": random_pretrained(root / "pre.pt")}


def _cfg(tiny, **kw) -> FinetuneConfig:
    base = dict(data=str(tiny["data"]), shots=1, strategy="a2c", iterations=4, pretrained=str(tiny["pretrained"]),
                clip_frames=3, clips_per_volume=2, slab=6, cache_dir=str(tiny["root"] / "cache"), workers=1,
                threads=1, ctu_grad_samples=64)
    base.update(kw)
    return FinetuneConfig(**base)


# --- split ------------------------------------------------------------------------------------------

def test_split_is_deterministic_disjoint_and_nested():
    ids = [f"case{i:03d}" for i in range(25)]
    splits = {k: split_cases(ids, k, seed=7) for k in (1, 3, 5)}
    for k, s in splits.items():
        assert len(s.train) == k and len(s.val) == 10 and len(s.test) == 10
        assert not (set(s.train) & set(s.val) or set(s.train) & set(s.test) or set(s.val) & set(s.test))
        assert split_cases(list(reversed(ids)), k, seed=7) == s  # order of discovery does not matter
    assert splits[1].test == splits[5].test and splits[1].val == splits[5].val
    assert set(splits[1].train) <= set(splits[3].train) <= set(splits[5].train)
    assert split_cases(ids, 1, seed=8).test != splits[1].test
    small = split_cases(ids[:4], 1, seed=0)
    assert (len(small.train), len(small.val), len(small.test)) == (1, 0, 3)
    with pytest.raises(Exception):
        split_cases(ids[:1], 1)


def test_heart_slab_and_clip_windows():
    mask = np.zeros((100, 4, 4), np.uint8)
    mask[60:70] = 1
    a, b = heart_slab(mask, 33)
    assert b - a == 33 and a <= 60 and b >= 70
    assert heart_slab(mask[:20], 33) == (0, 20)
    assert heart_slab(np.zeros((50, 2, 2)), 10) == (20, 30)
    assert clip_windows((10, 43), 9, 2) == [(10, 19), (34, 43)]
    assert clip_windows((0, 5), 9, 3) == [(0, 5)]


# --- strategies --------------------------------------------------------------------------------------

@pytest.mark.parametrize("strategy", list(EXPECTED_COUNTS))
def test_strategy_freezes_exactly_what_it_says(strategy):
    """Two A2C steps under each strategy: frozen tensors bit-identical, every changed tensor inside
    the strategy's modules, each of those modules changed, count = the documented one."""
    from dmic_core.agents.a2c import A2CConfig, A2CTrainer, TrainClip
    from dmic_core.agents.dmic import DMICAgents
    from dmic_core.datasets.phantom import generate_phantom

    vol, lab = generate_phantom(9200, n_slices=3, size=128)
    torch.manual_seed(0)
    agents = DMICAgents()
    clip = TrainClip.from_volume(vol.hu, lab, fake_cache(vol.hu, lab))
    trainer = A2CTrainer(agents, [clip], A2CConfig(iterations=2, batch_clips=2, strategy=strategy,
                                                   lr_frame=1e-2, lr_ctu=1e-2, ctu_grad_samples=64))
    assert trainer.trainable_parameters() == EXPECTED_COUNTS[strategy]
    before = {k: v.clone() for k, v in agents.state_dict().items()}  # adapters already inserted
    trainer.step()
    trainer.step()
    after = agents.state_dict()
    changed_modules = set()
    for agent_name in ("frame", "ctu"):
        agent = getattr(agents, agent_name)
        allowed = EXPECTED_MODULES[strategy]
        for k, p in agent.named_parameters():
            inside = any(k.startswith(m + ".") for m in allowed)
            assert p.requires_grad == inside, k
            key = f"{agent_name}.{k}"
            if not torch.equal(before[key], after[key]):
                assert inside, f"{strategy}: frozen {key} changed"
                changed_modules.add(next(m for m in allowed if k.startswith(m + ".")))
    assert changed_modules == EXPECTED_MODULES[strategy]


# --- finetune runs -----------------------------------------------------------------------------------

@needs_unet
def test_finetune_records_and_resumes(tiny, tmp_path):
    from dmic_core.agents.dmic import DMICAgents

    cfg = _cfg(tiny, iterations=6)
    fabricate_caches(cfg)
    out = tmp_path / "a2c.pt"
    calls = {"n": 0}

    def stop_after_3() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    events = []
    first = finetune(cfg, out, should_stop=stop_after_3, log=lambda m: None, progress=events.append)
    assert first.status == "cancelled" and 0 < first.iteration < 6
    assert json.loads(run_paths(out)["status"].read_text())["state"] == "cancelled"
    assert any(e["phase"] == "train" for e in events)
    resumed = finetune(_cfg(tiny, iterations=6), out, resume=True, log=lambda m: None)
    assert resumed.status == "done" and resumed.iteration == 6
    straight = finetune(_cfg(tiny, iterations=6), tmp_path / "b.pt", log=lambda m: None)
    sa = torch.load(str(out) + ".state", weights_only=False)["agents_full"]
    sb = torch.load(str(tmp_path / "b.pt") + ".state", weights_only=False)["agents_full"]
    assert all(torch.allclose(sa[k], sb[k], atol=1e-6) for k in sa), "resumed run differs from an uninterrupted one"
    agents = DMICAgents.load(out)
    meta = agents.meta
    assert meta["strategy"] == "a2c" and meta["shots"] == 1 and meta["trainable_parameters"] == 59392
    assert meta["split"]["seed"] == 0 and len(meta["split"]["train"]) == 1 and meta["split"]["test"]
    assert meta["iterations_done"] == 6 and meta["clips"]
    assert not set(meta["split"]["train"]) & set(meta["split"]["test"])
    # frozen parts equal the pretrained ones
    pre = DMICAgents.load(tiny["pretrained"])
    for k, v in pre.state_dict().items():
        if ".a2c." not in f".{k}":
            assert torch.equal(v, agents.state_dict()[k]), k


@needs_unet
def test_finetune_cli_and_cancel_file(tiny, tmp_path, capsys):
    from dmic_core.cli import main
    from dmic_core.finetune import read_history, request_cancel

    cfg = _cfg(tiny, strategy="adapter", shots=2)
    fabricate_caches(cfg)
    out = tmp_path / "adapter.pt"
    rc = main(["finetune", "--data", cfg.data, "--shots", "2", "--strategy", "adapter", "--iterations", "10",
               "--out", str(out), "--from", cfg.pretrained, "--clip-frames", "3", "--clips-per-volume", "2",
               "--slab", "6", "--cache-dir", cfg.cache_dir, "--workers", "1", "--threads", "1", "--quiet"])
    assert rc == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["trainable_parameters"] == EXPECTED_COUNTS["adapter"] and len(payload["split"]["train"]) == 2
    hist = read_history(out)
    assert hist and {"reward", "loss_frame", "loss_ctu", "eta_s"} <= set(hist[-1])
    request_cancel(out)  # a run started now stops before its first iteration, with a checkpoint
    res = finetune(_cfg(tiny, strategy="adapter", shots=2, iterations=20), out, resume=True, log=lambda m: None)
    assert res.iteration == 10 and res.status == "cancelled"


def test_finetune_rejects_bad_input(tmp_path):
    from dmic_core.errors import DmicInputError

    with pytest.raises(DmicInputError):
        FinetuneConfig(data=str(tmp_path), strategy="bogus")
    with pytest.raises(DmicInputError):
        FinetuneConfig(data=str(tmp_path), shots=0)


def test_selection_on_validation_keeps_the_best_iteration(tiny, tmp_path):
    """With validation volumes the output is the iteration whose greedy validation reward was
    highest (scored on clips never trained on); the last iteration is kept beside it."""
    from dmic_core.agents.dmic import DMICAgents
    from dmic_core.finetune.caches import _load_case, clip_specs
    from dmic_core.finetune.config import make_split

    cfg = _cfg(tiny, iterations=6, n_test=1, n_val=2, val_volumes=2)
    fabricate_caches(cfg)
    split, cases = make_split(cfg)
    assert len(split.val) == 2 and not set(split.val) & set(split.train)
    for s in clip_specs(cfg, split, cases, list(split.val)):
        vol, lab = _load_case(s.image, s.label)
        Path(s.cache_path).parent.mkdir(parents=True, exist_ok=True)
        fake_cache(vol.hu[s.start:s.stop], lab[s.start:s.stop]).save(s.cache_path)
    out = tmp_path / "sel.pt"
    result = finetune(cfg, out, log=lambda m: None, eval_every=2)
    assert result.status == "done" and result.iteration == 6
    chosen = DMICAgents.load(out)
    scores = chosen.meta["val_scores"]
    assert [s[0] for s in scores] == [0, 2, 4, 6]
    eligible = [s for s in scores if s[2]] or scores  # iterations whose decisions behave come first
    best_it, best_r, _ = max(eligible, key=lambda t: t[1])
    assert chosen.meta["selected_iteration"] == best_it and chosen.meta["val_reward"] == pytest.approx(best_r)
    assert {c["case"] for c in chosen.meta["val_clips"]} == set(split.val)
    assert chosen.meta["iterations_done"] == 6  # the run is complete even if an earlier iteration was chosen
    best = DMICAgents.load(out.with_suffix(".best.pt"))
    assert all(torch.equal(v, chosen.state_dict()[k]) for k, v in best.state_dict().items())
    last = DMICAgents.load(out.with_suffix(".last.pt"))
    assert last.meta.get("selected_iteration") is None
    if best_it != 6:  # the chosen weights are not simply the last ones
        assert any(not torch.equal(v, last.state_dict()[k]) for k, v in chosen.state_dict().items())
