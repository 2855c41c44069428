"""The evaluation protocol end to end on a tiny volume: real encodes, the oracle, the report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dmic_core.cli import main as cli
from dmic_core.datasets.phantom import generate_phantom, write_imagecas_pair
from dmic_core.defaults import DEFAULT_AGENTS, EVALUATION_LAMBDAS, EVALUATION_QP_IS, EVALUATION_QPS
from dmic_core.agents.spaces import PAPER
from dmic_core.protocol.methods import (ORACLE_BG, ORACLE_EXTENDED_BG, ORACLE_FG, TWO_LEVEL_BG, TWO_LEVEL_EXT_BG,
                                       decide_two_level, decide_two_level_ext)
from dmic_core.protocol.report import write_report
from dmic_core.errors import DmicInputError
from dmic_core.protocol.summary import with_extended_oracle, with_label_twin
from dmic_core.protocol.methods import ON_LABEL, TWO_LEVEL_ON_LABEL
from dmic_core.protocol.run import (AGENTS_ON_LABEL, ProtocolPlan, _agents_sha, current_rows, run_protocol,
                                   shipped_agents)
from dmic_core.protocol.volumes import EvaluationVolume


def test_grids_give_at_least_eight_points_per_method():
    assert len(EVALUATION_QPS) >= 8 and len(EVALUATION_QP_IS) >= 8 and len(EVALUATION_LAMBDAS) >= 8
    assert f"dmic:{DEFAULT_AGENTS.removesuffix('.pt')}" in shipped_agents()


def test_cli_refuses_seeds_that_are_not_reserved_for_evaluation(tmp_path, capsys):
    assert cli(["evaluate", "--seeds", "7001,9000", "--work", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "7001" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("protocol")
    volume, label = generate_phantom(9000, n_slices=24, size=256)
    image, label_path = write_imagecas_pair(volume, label, folder, "phantom-9000")
    per_slice = (label > 0).sum(axis=(1, 2))
    start = int(max(0, min(per_slice.argmax() - 3, 24 - 6)))
    vol = EvaluationVolume("phantom-9000", str(image), str(label_path), (start, start + 6), "label")
    plan = ProtocolPlan([vol], {f"dmic:{DEFAULT_AGENTS.removesuffix('.pt')}": shipped_agents()[
        f"dmic:{DEFAULT_AGENTS.removesuffix('.pt')}"]}, qps=(18, 26, 34, 42), qp_is=(17, 23, 29, 35),
        lambdas=(0.0, 1.0, 10.0, 100.0), oracle_volumes=1, methods=("hevc", "ratecontrol", "sqrt", "gop8", "dmic", "oracle"))
    log = run_protocol(plan, folder / "work", workers=2, log=lambda m: None)
    return plan, log, folder


def test_every_planned_point_runs_once_and_a_rerun_runs_none(tiny):
    plan, log, folder = tiny
    jobs = plan.jobs()
    assert len(log) == len(jobs) == 4 * 4 + 4 + 4 * len(ORACLE_FG) * len(ORACLE_BG)
    # --methods: leaving out the agents' curves and the oracle leaves out exactly their points
    anchors_only = ProtocolPlan(plan.volumes, plan.agents, qps=plan.qps, qp_is=plan.qp_is, lambdas=plan.lambdas,
                                oracle_volumes=1, methods=("hevc", "ratecontrol", "sqrt", "gop8"))
    assert len(anchors_only.jobs()) == 4 * 4
    # the extended oracle adds only the background offsets the paper space lacks, on the oracle volumes
    extended = ProtocolPlan(plan.volumes, plan.agents, qps=plan.qps, qp_is=plan.qp_is, lambdas=plan.lambdas,
                            oracle_volumes=1, methods=("oracle", "oracle_extended"))
    assert ORACLE_EXTENDED_BG == (12, 16, 20) and not set(ORACLE_EXTENDED_BG) & set(ORACLE_BG)
    assert len(extended.jobs()) == 4 * len(ORACLE_FG) * (len(ORACLE_BG) + len(ORACLE_EXTENDED_BG))
    with pytest.raises(ValueError, match="unknown protocol methods"):
        ProtocolPlan(plan.volumes, methods=("hevc", "bogus"))
    again = run_protocol(plan, folder / "work", workers=1, log=lambda m: None)
    assert len(again) == len(jobs)
    rows = pd.DataFrame(list(log))
    oracle = rows[rows.curve == "oracle"]
    assert set(zip(oracle.fg, oracle.bg)) == {(f, b) for f in ORACLE_FG for b in ORACLE_BG}
    gop8 = rows[rows.curve == "gop8"]
    assert (gop8.mean_fg_offset.fillna(0) == 0).all() and (gop8.mean_bg_offset == 0).all()


def test_oracles_run_on_every_labelled_volume_by_default(tiny):
    plan, _, _ = tiny
    labelled = plan.volumes[0]
    unlabelled = EvaluationVolume("ct-crop", labelled.image, None, labelled.slices, "segmentation")
    second = EvaluationVolume("phantom-9001", labelled.image, labelled.label, labelled.slices, "label")
    volumes = [labelled, unlabelled, second]

    def oracle_jobs(**kw):
        jobs = ProtocolPlan(volumes, {}, qp_is=(29,), methods=("oracle", "oracle_extended"), **kw).jobs()
        assert all(j.case.label is not None for j in jobs)  # never on a volume without a label
        return len(jobs)

    per_volume = len(ORACLE_FG) * (len(ORACLE_BG) + len(ORACLE_EXTENDED_BG))
    assert oracle_jobs() == 2 * per_volume  # both labelled volumes
    assert oracle_jobs(oracle_volumes=1) == per_volume
    assert oracle_jobs(oracle_volumes=0) == 0


def test_report_tables_bd_per_volume_and_oracle_share(tiny):
    plan, log, folder = tiny
    paths = write_report(list(log), plan, folder / "out", wall_seconds=12.0, command="dmic evaluate (test)")
    summary = json.loads(paths["json"].read_text())
    curves = {r["curve"]: r for r in summary["summary"]}
    assert {"ratecontrol", "sqrt", "gop8", "oracle"} <= set(curves)
    per_volume = pd.DataFrame(summary["per_volume"])
    assert (per_volume.volume == "phantom-9000").all()
    oracle = curves["oracle"]
    if oracle["volumes"]:  # a defined oracle BD: every other defined curve has its share
        assert math.isfinite(oracle["bd_rate_mean"])
    text = paths["markdown"].read_text()
    assert "| oracle |" in text and "share of oracle gain" in text and "phantom-9000" in text
    assert paths["html"].stat().st_size > 10_000
    assert "wall time of the run that finished it: 0.2 min" in text
    # a report rebuilt from the log alone says that instead of a time
    rebuilt = write_report(list(log), plan, folder / "out2", wall_seconds=None, command="dmic evaluate --report-only")
    assert "no point coded by this command" in rebuilt["markdown"].read_text()
    assert json.loads(rebuilt["json"].read_text())["wall_seconds"] is None


def test_report_without_anchor_points_is_a_clear_error(tiny):
    """A log of another fingerprint (segmenter, slab, encoder) gives no rows: a one-line error, not a
    pandas KeyError from deep inside the summary."""
    plan, log, folder = tiny
    with pytest.raises(DmicInputError, match="no hevc point"):
        write_report([], plan, folder / "empty", wall_seconds=None, command="dmic evaluate --report-only")
    without_anchor = [r for r in log if r["curve"] != "hevc"]
    assert without_anchor
    with pytest.raises(DmicInputError, match=f"{len(without_anchor)} points in all"):
        write_report(without_anchor, plan, folder / "no_anchor", wall_seconds=None, command="(test)")
    assert not (folder / "empty").exists()


def test_extended_oracle_curve_includes_the_paper_oracle_points():
    """Its envelope is over both point sets, and only on the volumes where it ran."""
    rows = pd.DataFrame([
        {"volume": "a", "curve": "oracle", "bg": 8}, {"volume": "a", "curve": "oracle_extended", "bg": 16},
        {"volume": "b", "curve": "oracle", "bg": 8}, {"volume": "b", "curve": "hevc", "bg": None}])
    out = with_extended_oracle(rows)
    ext = out[out.curve == "oracle_extended"]
    assert sorted(ext.bg) == [8, 16] and set(ext.volume) == {"a"}
    assert len(out[out.curve == "oracle"]) == 2  # the paper oracle keeps its own rows
    assert with_extended_oracle(rows[rows.curve != "oracle_extended"]).equals(rows[rows.curve != "oracle_extended"])


def test_a_plan_s_segmenter_scores_every_point_and_keys_its_own_log(tiny):
    """Another diagnosis model (``--segmenter builtin-lite``) runs every job with that model and writes
    a log of its own; the default model's fingerprint keeps its old key; unknown names are refused."""
    from dataclasses import replace

    from dmic_core.protocol.run import fingerprint

    plan, _, _ = tiny
    lite = replace(plan, segmenter="builtin-lite")
    assert {j.case.segmenter for j in lite.jobs()} == {"builtin-lite"}
    assert {j.case.segmenter for j in plan.jobs()} == {"builtin"}
    assert fingerprint(lite) != fingerprint(plan)
    with pytest.raises(ValueError, match="segmenter"):
        replace(plan, segmenter="mystery")


def test_two_level_s_label_twin_is_the_oracle_s_points_of_its_pair_only():
    """The like-for-like bound: the oracle's rows of two_level's pair (fg 0, bg +8) and no other, as
    many points as a method's curve; its share is reported like the oracle's."""
    from dmic_core.protocol.summary import summarise

    rows = pd.DataFrame([{"volume": "a", "curve": "oracle", "setting": q, "fg": fg, "bg": bg}
                         for q in (25, 29) for fg in ORACLE_FG for bg in ORACLE_BG]
                        + [{"volume": "a", "curve": "hevc", "setting": 32, "fg": None, "bg": None}])
    out = with_label_twin(rows)
    twin = out[out.curve == TWO_LEVEL_ON_LABEL]
    assert len(twin) == 2 and set(twin.fg) == {0} and set(twin.bg) == {TWO_LEVEL_BG}
    assert len(out[out.curve == "oracle"]) == len(ORACLE_FG) * len(ORACLE_BG) * 2  # the oracle keeps every row
    assert with_label_twin(rows[rows.curve == "hevc"]).equals(rows[rows.curve == "hevc"])
    per_volume = pd.DataFrame([{"volume": v, "method": m, "bd_rate_pct": r, "bd_miou_pp": 1.0, "reason": None}
                               for v, row in {"a": {"oracle": -50.0, TWO_LEVEL_ON_LABEL: -40.0, "agents": -30.0},
                                              "b": {"oracle": -60.0, TWO_LEVEL_ON_LABEL: -50.0, "agents": -40.0}}.items()
                               for m, r in row.items()])
    agents = summarise(per_volume).set_index("curve").loc["agents"]
    assert agents.oracle_pair_share_mean == pytest.approx((30 / 40 + 40 / 50) / 2)
    assert agents.oracle_share_mean == pytest.approx((30 / 50 + 40 / 60) / 2)
    assert agents.oracle_pair_volumes == 2


@pytest.mark.parametrize("decide, background", [(decide_two_level, 8), (decide_two_level_ext, 12)])
def test_two_level_rules_protect_the_segmenter_s_ctus_only(decide, background):
    """0 on every CTU that holds the segmenter's mask in that frame, the rule's background offset
    (+8: the paper space's coarsest; +12: extended only) on the rest; the GOP-8 frame QPs."""
    from types import SimpleNamespace

    assert (TWO_LEVEL_BG, TWO_LEVEL_EXT_BG) == (8, 12) and TWO_LEVEL_BG == max(PAPER.bg_offsets)
    roi = np.zeros((3, 128, 192), np.uint8)
    roi[1, 70:72, 130:133] = 1  # one frame, CTU row 1, column 2
    case = SimpleNamespace(reference=SimpleNamespace(roi=roi), volume=SimpleNamespace(n_frames=3))
    d = decide(case, 30.0, None)
    assert d.ctu_dqp.shape == (3, 2, 3) and d.ctu_dqp[1, 1, 2] == 0
    assert (np.delete(d.ctu_dqp.reshape(-1), 1 * 6 + 1 * 3 + 2) == background).all()
    assert list(d.frame_qps[:1]) == [30] and d.info == {"fg": 0, "bg": background}


def test_the_default_agents_on_the_label_get_the_label_as_their_mask_only(tiny):
    plan, _, _ = tiny
    vol = plan.volumes[0]
    unlabelled = EvaluationVolume("ct-crop", vol.image, None, vol.slices, "segmentation")
    jobs = ProtocolPlan([vol, unlabelled], plan.agents, lambdas=plan.lambdas, methods=(AGENTS_ON_LABEL,)).jobs()
    default = f"dmic:{DEFAULT_AGENTS.removesuffix('.pt')}"
    assert len(jobs) == len(plan.lambdas)  # the labelled volume only
    assert {j.name for j in jobs} == {default + ON_LABEL}
    assert all(j.case.roi == vol.label and j.case.label == vol.label and j.case.segmenter == "builtin" for j in jobs)
    assert all(j.options["agents"] == plan.agents[default] for j in jobs)
    # a replaced checkpoint's on-label points stay out too
    rows = [{"volume": vol.name, "curve": default + ON_LABEL, "agents_sha": "0123456789abcdef"}]
    assert current_rows(rows, plan) == []


def test_a_replaced_checkpoint_s_old_points_stay_out_of_its_curve(tiny):
    plan, log, _ = tiny
    name, path = next(iter(plan.agents.items()))
    vol = plan.volumes[0].name
    rows = [{"volume": vol, "curve": name, "agents_sha": _agents_sha(path)},
            {"volume": vol, "curve": name, "agents_sha": "0123456789abcdef"},
            {"volume": vol, "curve": "hevc", "agents_sha": None}, {"volume": "elsewhere", "curve": "hevc"}]
    assert current_rows(rows, plan) == [rows[0], rows[2]]
    assert len(current_rows(list(log), plan)) == len(log)  # a run's own points are all current


def test_a_volume_s_roi_file_replaces_the_segmenter_s_mask(tiny, tmp_path):
    """``EvaluationVolume.roi`` (bench/roi_gate.py's gated masks) is what the methods protect:
    with an empty mask the two-level rule puts every CTU at the background offset."""
    import nibabel as nib

    plan, _, _ = tiny
    vol = plan.volumes[0]
    source = nib.load(vol.image)
    empty = tmp_path / "empty.roi.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(source.shape, np.uint8), source.affine), str(empty))
    link = tmp_path / "phantom-9000+empty.img.nii.gz"
    link.symlink_to(vol.image)
    volumes = [vol, EvaluationVolume("phantom-9000+empty", str(link), vol.label, vol.slices, "label", roi=str(empty))]
    log = run_protocol(ProtocolPlan(volumes, {}, qp_is=(29,), oracle_volumes=0, methods=("two_level_ext",)),
                       tmp_path / "work", workers=1, log=lambda m: None)
    rows = {r["volume"]: r for r in log}
    assert rows["phantom-9000"]["fg_ctu_fraction"] > 0  # the segmenter's own mask has foreground CTUs
    assert rows["phantom-9000+empty"]["fg_ctu_fraction"] == 0
    assert rows["phantom-9000+empty"]["mean_bg_offset"] == TWO_LEVEL_EXT_BG
    assert rows["phantom-9000+empty"]["bits"] < rows["phantom-9000"]["bits"]


def test_confidence_gate_keeps_the_mask_only_in_confident_ctus():
    from dmic_core.maps import ctu_peak, gate_ctus_by_confidence

    mask = np.zeros((2, 100, 130), np.uint8)
    prob = np.zeros(mask.shape, np.float32)
    for f, y, x, p in ((0, 10, 10, 0.95), (0, 10, 70, 0.6), (1, 80, 120, 0.91)):  # 3 CTUs, the last partial
        mask[f, y, x], prob[f, y, x] = 1, p
    prob[0, 12, 75] = 0.5  # a second, fainter voxel in the faint CTU does not lift its peak
    assert ctu_peak(prob).shape == (2, 2, 3) and ctu_peak(prob)[0, 0, 1] == pytest.approx(0.6)
    gated = gate_ctus_by_confidence(mask, prob, 0.9)
    assert gated.dtype == np.uint8 and gated.sum() == 2 and gated[0, 10, 10] and gated[1, 80, 120] and not gated[0, 10, 70]
    assert gate_ctus_by_confidence(mask, prob, 0.0).sum() == 3  # gate 0 keeps the mask as it is
    with pytest.raises(ValueError, match="shape"):
        gate_ctus_by_confidence(mask, prob[:1], 0.9)


def test_small_components_are_dropped_across_frames_and_large_ones_kept_whole():
    from dmic_core.maps import drop_small_components

    mask = np.zeros((4, 64, 64), np.uint8)
    mask[0:4, 10, 10:20] = 1  # a vessel through 4 frames: 40 voxels, one component
    mask[1, 40:42, 40:42] = 1  # a 4-voxel blob
    mask[2, 50, 50] = mask[3, 51, 51] = 1  # 2 voxels touching diagonally across frames: one component
    out = drop_small_components(mask, 5)
    assert out.dtype == np.uint8 and out.sum() == 40 and out[0:4, 10, 10:20].all()
    assert drop_small_components(mask, 2).sum() == 46  # only nothing under 2 voxels: all kept
    assert drop_small_components(mask, 41).sum() == 0
    assert (drop_small_components(mask, 0) == mask).all()
    assert drop_small_components(np.zeros((2, 8, 8)), 10).sum() == 0
    # keep_ends: the vessel and the 2-voxel pair touch the first or last frame (they may go on
    # beyond it) and stay; the blob inside the frames goes
    ends = drop_small_components(mask, 41, keep_ends=True)
    assert ends.sum() == 42 and not ends[1, 40:42, 40:42].any() and ends[3, 51, 51]


def test_ctu_agreement_counts_missed_and_empty_ctus():
    from dmic_core.maps import ctu_agreement

    label = np.zeros((2, 128, 128), np.uint8)
    mask = np.zeros_like(label)
    label[0, 5, 5] = label[0, 70, 70] = label[1, 5, 70] = 1  # 3 label CTUs of 8
    mask[0, 6, 6] = mask[1, 5, 70] = 1  # 2 of them found ...
    mask[1, 100, 10] = 1  # ... and one CTU without label
    agree = ctu_agreement(mask, label)
    assert agree == pytest.approx({"mask_ctus": 3 / 8, "reference_ctus": 3 / 8, "reference_ctus_missed": 1 / 3,
                                   "mask_ctus_without_reference": 1 / 3})
    assert ctu_agreement(label, label)["reference_ctus_missed"] == 0.0
    assert ctu_agreement(np.zeros_like(label), label)["mask_ctus_without_reference"] == 0.0  # no mask CTU
    with pytest.raises(ValueError, match="shape"):
        ctu_agreement(mask[:1], label)


def test_selection_prefers_a_curve_defined_everywhere_then_the_paired_mean():
    import pandas as pd

    from dmic_core.protocol.summary import choose_curve

    nan = float("nan")
    per_volume = pd.DataFrame([
        # "gappy" has the lowest mean over its own volumes only because it has no BD on the hard v3
        {"volume": "v1", "method": "steady", "bd_rate_pct": -40.0},
        {"volume": "v2", "method": "steady", "bd_rate_pct": -30.0},
        {"volume": "v3", "method": "steady", "bd_rate_pct": -10.0},
        {"volume": "v1", "method": "gappy", "bd_rate_pct": -45.0},
        {"volume": "v2", "method": "gappy", "bd_rate_pct": -35.0},
        {"volume": "v3", "method": "gappy", "bd_rate_pct": nan},
        {"volume": "v1", "method": "hevc-like", "bd_rate_pct": -50.0},  # not a candidate
    ])
    winner, table = choose_curve(per_volume, ["gappy", "steady"])
    assert winner == "steady"
    assert table.set_index("curve").loc["gappy", "volumes_defined"] == 2

    # with the same coverage, the paired mean decides: "better" wins on the volumes both cover
    per_volume.loc[per_volume.method == "gappy", "bd_rate_pct"] = [-45.0, -35.0, -11.0]
    winner, table = choose_curve(per_volume, ["steady", "gappy"])
    assert winner == "gappy"
    assert table.set_index("curve").loc["gappy", "paired_bd_rate_mean"] == pytest.approx(-91.0 / 3)

    # nobody defined anywhere: no winner
    per_volume["bd_rate_pct"] = nan
    assert choose_curve(per_volume, ["steady", "gappy"])[0] is None
    assert choose_curve(pd.DataFrame(), ["steady"])[0] is None  # no BD table at all


def test_summary_pairs_every_curve_with_the_map_best_on_the_mean():
    import pandas as pd

    from dmic_core.protocol.summary import markdown, summarise

    bd = {  # volume -> BD-rate per curve; "exp" has the lowest mean of the maps
        "v1": {"exp": -30.0, "log": -20.0, "agents": -35.0},
        "v2": {"exp": -40.0, "log": -45.0, "agents": -38.0},
        "v3": {"exp": -20.0, "log": -10.0, "agents": -29.0},
    }
    per_volume = pd.DataFrame([{"volume": v, "method": m, "bd_rate_pct": r, "bd_miou_pp": 1.0, "reason": None}
                               for v, row in bd.items() for m, r in row.items()])
    summary = summarise(per_volume).set_index("curve")
    agents = summary.loc["agents"]
    assert agents.vs_map == "exp"
    assert agents.vs_map_mean == pytest.approx((-5.0 + 2.0 - 9.0) / 3)
    assert agents.vs_map_low <= agents.vs_map_mean <= agents.vs_map_high
    assert (agents.vs_map_wins, agents.vs_map_volumes) == (2, 3)
    assert agents.beats_best_map == 2  # v2's best map is log (-45), which the agents do not beat
    assert summary.loc["log"].vs_map_mean == pytest.approx(5.0)
    assert not isinstance(summary.loc["exp"].get("vs_map"), str)  # the reference map is not paired with itself
    text = markdown(per_volume, summary.reset_index(), ["exp", "log", "agents"])
    assert "minus exp, paired pp" in text and "2/3 |" in text


def test_moved_slabs_stay_inside_the_volume_and_pooled_curves_sum_bits_and_average_miou(tiny, tmp_path):
    from dmic_core.protocol.slabs import SLAB_OFFSETS, pooled, slab_variants
    from dmic_core.protocol.volumes import SLAB

    plan, _, _ = tiny
    vol = plan.volumes[0]  # 24 frames: every moved 33-frame slab is clamped to the volume
    long = EvaluationVolume(vol.name, vol.image, vol.label, (0, 24), vol.reference)
    unlabelled = EvaluationVolume("real", vol.image, None, (0, 24), "segmentation of the original")
    moved = slab_variants([long, unlabelled], SLAB_OFFSETS, tmp_path)
    assert sorted(moved) == sorted(SLAB_OFFSETS) and all(len(v) == 1 for v in moved.values())
    for offset, (m,) in moved.items():
        assert m.name == f"{vol.name}+slab{offset:+d}" and m.slices == (0, SLAB) and m.roi is None
        assert Path(m.image).resolve() == Path(vol.image).resolve() and m.image != vol.image
    (bound,) = slab_variants([long], [SLAB], tmp_path, label_region=True)[SLAB]
    assert bound.roi == vol.label and bound.name.endswith("+label")

    def rows(volume, bpp, miou):
        return pd.DataFrame({"volume": volume, "curve": "c", "method": "c", "setting": [1.0, 2.0][:len(bpp)],
                             "bpp": bpp, "miou": miou, "psnr_hu": 40.0})

    out = pooled({"0": rows("v", [0.1, 0.2], [0.8, 0.9]), "+33": rows("v+slab+33", [0.3, 0.4], [0.6, 0.7]),
                  "-33": rows("v+slab-33", [0.2], [0.4])})
    # setting 2 is missing on one slab: left out, so every pooled point covers the same frames
    assert out.setting.tolist() == [1.0] and out.volume.tolist() == ["v"]
    assert out.bpp.iloc[0] == pytest.approx(0.2) and out.miou.iloc[0] == pytest.approx(0.6)


def test_pooled_protocol_rows_pool_labelled_volumes_per_oracle_pair_and_the_report_says_so(tiny):
    from dmic_core.protocol.slabs import pooled_protocol_rows

    plan, log, folder = tiny
    rows = list(log)
    real = [{**r, "volume": "real-ct"} for r in rows if r["curve"] == "hevc"]  # no moved slabs: kept as is
    moved = {k: [{**r, "volume": f"{r['volume']}+slab{k}", "bpp": 2 * r["bpp"], "seconds": 1.0} for r in rows]
             for k in ("-33", "+33")}
    out = pd.DataFrame(pooled_protocol_rows(rows + real, moved))
    mine = pd.DataFrame(rows)
    assert len(out) == len(mine) + len(real)  # every (curve, setting, oracle pair) once per volume
    oracle = out[(out.volume == "phantom-9000") & (out.curve == "oracle")]
    assert len(oracle) == len(mine[mine.curve == "oracle"]) and oracle[["fg", "bg"]].notna().all().all()
    first = mine[mine.curve == "oracle"].iloc[0]
    pooled_point = oracle[(oracle.setting == first.setting) & (oracle.fg == first.fg) & (oracle.bg == first.bg)].iloc[0]
    assert pooled_point.bpp == pytest.approx(first.bpp * 5 / 3) and pooled_point.miou == pytest.approx(first.miou)
    assert pooled_point.seconds == pytest.approx(first.seconds + 2.0)
    assert (out[out.volume == "real-ct"].bpp.values == pd.DataFrame(real).bpp.values).all()
    slabs = {k: {"phantom-9000+slab" + k: [0, 24]} for k in moved}
    paths = write_report(out.to_dict(orient="records"), plan, folder / "pooled", wall_seconds=None,
                         command="dmic evaluate --slabs (test)", slabs=slabs)
    text = paths["markdown"].read_text()
    assert "3 slabs per labelled volume, pooled" in text and "slices " in text and ", 0:24, 0:24, vs label" in text
    assert json.loads(paths["json"].read_text())["pooled_slabs"] == slabs


def test_a_volumes_region_file_moves_with_its_slabs_and_a_variants_slabs_pool_under_its_plain_name(tiny, tmp_path):
    """A mask rule under study (``bench/roi_gate.py --slabs``) protects the same region file on every
    slab, and its curves pool like the plain volume's instead of staying a single slab."""
    from dmic_core.protocol.slabs import SLAB_OFFSETS, pooled_protocol_rows, slab_variants

    plan, log, _ = tiny
    vol = plan.volumes[0]
    region = str(tmp_path / "rule.roi.nii.gz")
    variant = EvaluationVolume(f"{vol.name}+cc500", vol.image, vol.label, (0, 24), vol.reference, region)
    for offset, (m,) in slab_variants([variant], SLAB_OFFSETS, tmp_path).items():
        assert m.roi == region and m.name == f"{vol.name}+cc500+slab{offset:+d}"
    rows = [{**r, "volume": f"{r['volume']}+cc500"} for r in log if r["curve"] == "hevc"]
    moved = {k: [{**r, "volume": f"{r['volume']}+slab{k}", "bpp": 2 * r["bpp"]} for r in rows] for k in ("-33", "+33")}
    out = pd.DataFrame(pooled_protocol_rows(rows, moved))
    assert len(out) == len(rows) and set(out.volume) == {vol.name}
    assert out.bpp.sum() == pytest.approx(pd.DataFrame(rows).bpp.sum() * 5 / 3)


def test_points_carry_over_only_for_volumes_a_changed_plan_codes_the_same_way(tiny, tmp_path):
    """Moving one volume's slab gives a new fingerprint (a fresh log); the other volumes' rows are copied
    over, the moved volume's are not, rows already in the new log are kept, and a plan with another
    segmenter is refused (its points are not comparable)."""
    from dataclasses import replace

    from dmic_core.protocol.run import carry_over_points, fingerprint, log_path, row_key
    from dmic_core.runs import PointLog

    plan, log, _ = tiny
    (vol,) = plan.volumes
    other = EvaluationVolume("other", vol.image + ".other", None, (0, 6), "segmentation of the original")
    old = replace(plan, volumes=[vol, other])
    moved = replace(plan, volumes=[vol, replace(other, slices=(2, 8))])
    assert fingerprint(old) != fingerprint(moved)
    work = tmp_path / "work"
    old_log = PointLog(log_path(old, work), row_key)
    for row in log:
        old_log.add(row)
        old_log.add({**row, "volume": "other"})
    kept = {**next(iter(log)), "miou": -1.0}
    PointLog(log_path(moved, work), row_key).add(kept)
    assert carry_over_points(old, moved, work) == len(log) - 1
    new_log = PointLog(log_path(moved, work), row_key)
    assert len(new_log) == len(log) and {r["volume"] for r in new_log} == {vol.name}
    assert new_log.get(row_key(kept))["miou"] == -1.0
    assert carry_over_points(old, moved, work) == 0
    with pytest.raises(ValueError, match="segmenter"):
        carry_over_points(old, replace(moved, segmenter="builtin-lite"), work)


def test_a_report_folder_s_log_copies_restore_only_into_the_log_of_their_fingerprint(tiny, tmp_path):
    """What a report folder keeps (a copy of every log it used, keyed by fingerprint) puts the same rows
    back into an empty working folder, adds nothing on a second restore, never fills the log of another
    fingerprint, and a folder without copies is a clear error naming it."""
    from dataclasses import replace

    from dmic_core.protocol.archive import MANIFEST, archive_point_logs, restore_point_logs
    from dmic_core.protocol.run import fingerprint, log_path, row_key
    from dmic_core.runs import PointLog

    plan, log, folder = tiny
    report = tmp_path / "report"
    other_slab = (0, 6) if tuple(plan.volumes[0].slices) != (0, 6) else (1, 7)
    moved = replace(plan, volumes=[replace(plan.volumes[0], slices=other_slab)])
    assert fingerprint(moved) != fingerprint(plan)
    logs = {"": (fingerprint(plan), log.path), "+33": (fingerprint(moved), tmp_path / "never-run.jsonl")}
    assert archive_point_logs(report, logs) == {"points.jsonl": len(log)}  # a log not yet written is skipped
    assert json.loads((report / MANIFEST).read_text()) == {"points.jsonl": {"fingerprint": fingerprint(plan),
                                                                             "rows": len(log)}}
    work = tmp_path / "fresh"
    targets = {fingerprint(plan): log_path(plan, work), fingerprint(moved): log_path(moved, work)}
    assert restore_point_logs(report, targets) == {"points.jsonl": len(log)}
    restored = PointLog(log_path(plan, work), row_key)
    assert {row_key(r): r for r in restored} == {row_key(r): r for r in log}
    assert not log_path(moved, work).exists()
    assert restore_point_logs(report, targets) == {"points.jsonl": 0}
    with pytest.raises(DmicInputError, match="another segmenter"):
        restore_point_logs(report, {fingerprint(moved): log_path(moved, work)})
    with pytest.raises(DmicInputError, match=str(folder.name)):
        restore_point_logs(folder, targets)
