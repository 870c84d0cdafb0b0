"""The evaluation harness on the tiny networks: every method measured, the method steadier than the direct edit,
tables in the paper's shape, a clip without a face recorded as a failure, and the same numbers through Ray."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tcve import cli
from tcve.consistency import ConsistencyConfig, Phase1Config, Phase2Config
from tcve.dvp import DVPConfig
from tcve.edit import UnknownEdit
from tcve.evaluate import (CSV_FIELDS, METHODS, EvaluateConfig, ServiceModels, default_edits, evaluate, find_clips,
                           to_csv, to_markdown)
from tcve.invert import InversionConfig, PTIConfig
from tcve.pipeline import PipelineConfig
from tcve.video import write_video

pytestmark = pytest.mark.usefixtures("one_thread")
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.mp4"
EDITS = ["smile", "sketch"]  # one in-domain edit, one out-of-domain style
LIGHT = EvaluateConfig(
    pipeline=PipelineConfig(
        inversion=InversionConfig(pti=PTIConfig(steps=1, batch_size=4)), stitch=None,
        consistency=ConsistencyConfig.in_domain(scale_factor=1, phase1=Phase1Config(epochs=1),
                                                phase2=Phase2Config(epochs=2), pairs_per_step=4)),
    dvp=DVPConfig(epochs=3, width=8),
    metrics_size=64,
    max_frames=5,
)


@pytest.fixture(scope="module")
def no_face(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (96, 96, 3), dtype=np.uint8) for _ in range(4)]
    return write_video(tmp_path_factory.mktemp("clips") / "noise.mp4", frames, 10)


@pytest.fixture(scope="module")
def result(no_face):
    fractions = []
    res = evaluate([EXAMPLE, no_face], EDITS, ServiceModels("tiny", "cpu"), LIGHT,
                   progress=lambda f, m: fractions.append(f))
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    return res


def test_every_method_is_measured(result):
    assert [(r.edit, r.method) for r in result.rows] == [(e, m) for e in EDITS for m in METHODS]
    for r in result.rows:
        assert r.clip == "astronaut.mp4" and r.frames == 5
        assert math.isfinite(r.warping_error) and r.warping_error > 0
        assert math.isfinite(r.lpips) and r.lpips >= 0 and r.seconds >= 0
        assert all(math.isfinite(v) for v in (r.tl_id, r.tg_id, r.id_sim))   # the tiny set's random identity net
    assert {r.domain for r in result.rows if r.edit == "smile"} == {"in"}
    assert {r.domain for r in result.rows if r.edit == "sketch"} == {"out"}
    by = {(r.edit, r.method): r for r in result.rows}
    for edit in EDITS:
        assert by[(edit, "direct")].lpips == 0.0
        assert by[(edit, "full")].warping_error < by[(edit, "direct")].warping_error
        assert by[(edit, "dvp")].warping_error < by[(edit, "direct")].warping_error
        assert by[(edit, "dvp")].lpips > 0
    # the summary table: one line per (domain, method), means of the rows
    assert [(s.domain, s.method) for s in result.table] == [(d, m) for d in ("in", "out") for m in METHODS]
    assert all(s.count == 1 for s in result.table)
    assert result.table[0].warping_error == pytest.approx(by[("smile", "direct")].warping_error)


def test_a_clip_without_a_face_is_recorded_not_raised(result):
    assert [(f.clip, f.edit, f.error) for f in result.failed] == [("noise.mp4", e, "NoFaceFound") for e in EDITS]
    assert all(f.message for f in result.failed)


def test_markdown_and_csv_shapes(result):
    text = to_markdown(result)
    assert text.count("| Method | E_warp ↓ | LPIPS ↓ | TL-ID ↑ | TG-ID ↑ | ID-sim ↑ | seconds/clip |") == 2
    assert "### In-domain edits" in text and "### Out-of-domain edits" in text
    method_lines = [line for line in text.splitlines() if line.startswith("| Ours (phases 1 + 2) |")]
    assert len(method_lines) == 2 and all(len(line.split("|")) == 9 for line in method_lines)
    assert "Failed (2)" in text and "noise.mp4 / smile: NoFaceFound" in text
    rows = list(csv.reader(io.StringIO(to_csv(result))))
    assert tuple(rows[0]) == CSV_FIELDS and len(rows) == 1 + len(EDITS) * len(METHODS)
    assert all(len(r) == len(CSV_FIELDS) for r in rows)
    assert float(rows[1][CSV_FIELDS.index("warping_error")]) == pytest.approx(result.rows[0].warping_error, rel=1e-5)


def test_inputs_are_checked(tmp_path):
    with pytest.raises(UnknownEdit):
        evaluate([EXAMPLE], ["no such edit"], ServiceModels("tiny", "cpu"), LIGHT)
    with pytest.raises(ValueError):
        EvaluateConfig(methods=("direct", "magic"))
    found = find_clips([str(EXAMPLE.parent)])
    assert EXAMPLE in found and all(p.suffix == ".mp4" for p in found) and found == sorted(found)
    assert default_edits({"in": [("angry", True, ""), ("smile", True, "")],
                          "out": [("text style", True, ""), ("joker", True, ""), ("elf", False, "")]}) == ["angry",
                                                                                                           "joker"]
    assert cli.main(["evaluate", "--clips", str(tmp_path / "missing.mp4"), "--models", "tiny", "-q"]) == 3
    assert cli.main(["evaluate", "--clips", str(EXAMPLE), "--models", "tiny", "--edits", "nope", "-q"]) == 2
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "--clips", str(EXAMPLE), "--methods", "direct,magic"])


def test_ray_gives_the_same_rows(result, no_face):
    pytest.importorskip("ray")
    config = EvaluateConfig(methods=("direct", "smoothing"), pipeline=LIGHT.pipeline, metrics_size=64, max_frames=5,
                            ray_num_cpus=1)
    fractions = []
    res = evaluate([EXAMPLE, no_face], ["smile"], ServiceModels("tiny", "cpu"), config, ray_address="local",
                   progress=lambda f, m: fractions.append(f))
    assert fractions[-1] == pytest.approx(1.0)
    assert [(f.clip, f.error) for f in res.failed] == [("noise.mp4", "NoFaceFound")]
    local = {(r.edit, r.method): r for r in result.rows}
    assert [r.method for r in res.rows] == ["direct", "smoothing"]
    for r in res.rows:
        assert r.warping_error == pytest.approx(local[(r.edit, r.method)].warping_error, rel=1e-3)
        assert r.lpips == pytest.approx(local[(r.edit, r.method)].lpips, abs=1e-6)
