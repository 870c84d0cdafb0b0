"""The ground-truth benchmark on one tiny demo clip: every row and column, the truth at distance 0 / inf dB, the
reconstruction floor finite, the identity metrics' definition, and the command writing its three files."""

from __future__ import annotations

import csv
import dataclasses
import io
import math

import pytest
import torch

from tcve import gt_benchmark
from tcve.consistency import ConsistencyConfig, Phase1Config, Phase2Config
from tcve.demo.classifier import load_classifier
from tcve.demo.gt_clips import ClipSpec
from tcve.dvp import DVPConfig
from tcve.evaluate import METHODS, EvaluateConfig
from tcve.gt_benchmark import (CSV_FIELDS, GTBenchmarkConfig, GTResult, combine, rows_from_csv, run_benchmark,
                               to_csv, to_markdown)
from tcve.invert import InversionConfig, PTIConfig
from tcve.pipeline import PipelineConfig
from tcve.service import Service

pytestmark = pytest.mark.usefixtures("one_thread")
EDITS = ("eyeglasses", "sketch")
LIGHT = GTBenchmarkConfig(
    clips=(ClipSpec(seed=5, n_frames=3),),
    edits=EDITS,
    evaluate=EvaluateConfig(
        pipeline=PipelineConfig(
            inversion=InversionConfig(pti=PTIConfig(steps=1, batch_size=3)), stitch=None,
            consistency=ConsistencyConfig.in_domain(scale_factor=1, phase1=Phase1Config(epochs=1),
                                                    phase2=Phase2Config(epochs=1), pairs_per_step=2)),
        dvp=DVPConfig(epochs=1, width=8)),
)


def _pixels_embedding(images: torch.Tensor) -> torch.Tensor:
    """A stand-in identity embedding (downsampled pixels): enough to exercise the identity columns."""
    return torch.nn.functional.avg_pool2d(images.float(), 8).flatten(1)


@pytest.fixture(scope="module")
def result():
    models = Service(models="demo", device="cpu").models()
    return run_benchmark(models, LIGHT, embed=_pixels_embedding, classifier=load_classifier())


def test_every_row_and_metric(result):
    expected = [("none", "floor"), ("eyeglasses", "truth"), *[("eyeglasses", m) for m in METHODS],
                ("none", "floor"), ("sketch", "truth"), *[("sketch", m) for m in METHODS]]
    assert [(r.edit, r.method) for r in result.rows] == expected
    assert {r.domain for r in result.rows if r.edit == "eyeglasses"} == {"in"}
    assert {r.domain for r in result.rows if r.edit == "sketch"} == {"out"}
    for r in result.rows:
        assert r.frames == 3 and r.clip == "gt-5"
        for name in ("warping_error", "gt_lpips_frame", "tl_id", "tg_id", "id_similarity", "seconds"):
            assert math.isfinite(getattr(r, name)), (r.method, name)
        if r.method != "truth":
            assert math.isfinite(r.gt_psnr_crop) and math.isfinite(r.gt_psnr_frame) and r.gt_lpips_crop > 0
        if r.domain == "in":  # the classifier reads only the photo-like domain
            assert 0 <= r.motion_accuracy <= 1 and 0 <= r.acc_mouth_open <= 1
    by = {(r.edit, r.method): r for r in result.rows}
    for edit in EDITS:
        assert by[(edit, "direct")].lpips_direct == 0.0 and by[(edit, "dvp")].lpips_direct > 0
        assert by[(edit, "dvp")].warping_error != by[(edit, "direct")].warping_error
    assert math.isnan(by[("sketch", "direct")].edit_accuracy)  # no classifier head reads a sketch


def test_truth_is_at_distance_zero(result):
    for r in result.rows:
        if r.method == "truth":
            assert r.gt_lpips_crop == 0.0 and r.gt_lpips_frame == 0.0
            assert math.isinf(r.gt_psnr_crop) and math.isinf(r.gt_psnr_frame)
    truth = next(r for r in result.rows if r.method == "truth" and r.edit == "eyeglasses")
    # the judge reads the rendered truth: glasses in every frame
    assert truth.edit_accuracy == 1.0


def test_floor_is_the_inversion_against_the_unedited_clip(result):
    floors = [r for r in result.rows if r.method == "floor"]
    assert [f.domain for f in floors] == ["in", "out"]
    for f in floors:
        assert 15.0 < f.gt_psnr_crop < 60.0 and 0 < f.gt_lpips_crop < 0.5
        assert math.isnan(f.lpips_direct) and f.seconds > 0
    # the truth's LPIPS to the direct edit is the direct edit's LPIPS to the truth (same pair, both directions)
    by = {(r.edit, r.method): r for r in result.rows}
    for edit in EDITS:
        assert by[(edit, "truth")].lpips_direct == pytest.approx(by[(edit, "direct")].gt_lpips_crop, rel=0.05)


def test_tables_have_every_column(result):
    md = to_markdown(result)
    for header, _, _ in gt_benchmark.COLUMNS:
        assert header in md
    for label in ("Reconstruction floor", "Ground truth (rendered edit)", "Direct editing", "Latent smoothing",
                  "DVP", "Phase 1 only", "Phase 2 only", "Ours (phases 1 + 2)", "×direct", "Goals of issue 14"):
        assert label in md, label
    assert "∞" in md and "Expression following" in md
    rows = list(csv.reader(io.StringIO(to_csv(result))))
    assert tuple(rows[0]) == CSV_FIELDS and len(rows) == 1 + len(result.rows)
    truth = next(r for r in rows[1:] if r[3] == "truth")
    assert truth[CSV_FIELDS.index("gt_psnr_crop")] == "inf"


def test_identity_columns_are_the_identity_module_on_the_crops(result):
    # the source embedding against itself would be 1: the floor (a reconstruction) stays close to it, below 1 + slack
    floor = next(r for r in result.rows if r.method == "floor" and r.domain == "in")
    assert 0.5 < floor.id_similarity <= 1.0 + 1e-6
    truth = next(r for r in result.rows if r.method == "truth" and r.edit == "eyeglasses")
    assert truth.id_similarity < 1.0  # glasses change the pixels the stand-in embedding sees


def test_unknown_edit_is_refused():
    with pytest.raises(ValueError, match="no ground truth"):
        GTBenchmarkConfig(edits=("beard",))


def test_command_writes_table_csv_and_command(tmp_path):
    out = tmp_path / "gt"
    argv = ["--seeds", "5", "--frames", "2", "--edits", "smile", "--methods", "direct,smoothing", "--pti-steps", "0",
            "--out-dir", str(out)]
    assert gt_benchmark.main(argv) == 0
    assert "Latent smoothing" in (out / "results.md").read_text()
    rows = list(csv.DictReader(io.StringIO((out / "results.csv").read_text())))
    assert [r["method"] for r in rows] == ["floor", "truth", "direct", "smoothing"]
    assert (out / "command.txt").read_text().startswith("python -m bench.demo_gt --seeds 5 --frames 2")


def test_parts_combine_into_one_table_and_must_agree(result):
    rows = rows_from_csv(to_csv(result))
    assert [(r.edit, r.method, r.frames) for r in rows] == [(r.edit, r.method, r.frames) for r in result.rows]
    assert rows[1].gt_psnr_crop == math.inf and rows[0].gt_psnr_crop == pytest.approx(result.rows[0].gt_psnr_crop, rel=1e-5)
    baselines = [r for r in rows if r.method in ("floor", "truth", "direct", "smoothing", "dvp")]
    phases = [r for r in rows if r.method in ("floor", "truth", "direct", "phase1", "phase2", "full")]
    phases = [dataclasses.replace(r, seconds=r.seconds + 1) for r in phases]  # times may differ, metrics not
    merged = combine([baselines, phases])
    assert [(r.edit, r.method) for r in merged] == [(r.edit, r.method) for r in rows]
    assert "Ours (phases 1 + 2)" in to_markdown(GTResult(merged))
    bad = [dataclasses.replace(r, warping_error=2 * r.warping_error) if r.method == "direct" else r for r in phases]
    with pytest.raises(ValueError, match="warping_error differs"):
        combine([baselines, bad])
