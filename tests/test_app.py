"""The Gradio app end to end through gradio_client, with the tiny models on a 4-frame excerpt of the example clip."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

gr = pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402

import app  # noqa: E402
from tcve.service import PRESETS, SETTINGS, Service, example_clips  # noqa: E402
from tcve.video import probe  # noqa: E402

CLIP = example_clips()[0]
FRAMES = 4
# The lightest settings that still run every stage (one PTI pass, one epoch per phase, one stitching step).
LIGHT = {"advanced": True, "pti_steps": 1, "phase1_epochs": 1, "phase2_epochs": 1, "pairs_per_step": 4,
         "stitch_steps": 1, "text_steps": 2, "nada_steps": 2}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Service:
    return Service("tiny", device="cpu", workdir=tmp_path_factory.mktemp("app-outputs"))


@pytest.fixture(scope="module")
def client(service: Service):
    demo = app.build_demo(service)
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        yield Client(demo.local_url, verbose=False)
    finally:
        demo.close()


def test_demo_builds_with_presets_and_tabs(service: Service) -> None:
    demo = app.build_demo(service)
    config = demo.get_config_file()
    labels = {c["props"].get("label") for c in config["components"]}
    assert {"In-domain edit", "Out-of-domain style", "Compare", "About"} <= labels
    radios = [c for c in config["components"] if c["type"] == "radio"]
    assert [ch[0] for ch in radios[0]["props"]["choices"]] == list(PRESETS)
    sliders = {c["props"]["label"] for c in config["components"] if c["type"] == "slider"}
    assert {s.label for s in SETTINGS} <= sliders
    assert demo._queue.max_size == app.QUEUE_SIZE  # bounded queue, one job at a time
    assert demo._queue.default_concurrency_limit == 1


def test_edit_end_to_end(client: Client, service: Service) -> None:
    out = client.predict(video=handle_file(str(CLIP)), edit="angry", max_frames=FRAMES, api_name="/edit", **LIGHT)
    face, edited, direct, side, files, table, curves, xt, metrics, status = out
    expected = probe(CLIP, service.read_options(CLIP, 0.0, None, FRAMES))
    assert expected.n_frames == FRAMES
    for path in (edited, direct, side):
        info = probe(path, limits=None)
        assert info.n_frames == FRAMES
        assert math.isclose(float(info.fps), float(expected.fps), rel_tol=1e-6)
    edited_info = probe(edited, limits=None)
    assert edited_info.has_audio and expected.has_audio
    assert (edited_info.width, edited_info.height) == (expected.width, expected.height)
    assert Path(face).exists()
    assert {Path(f).name for f in files} == {"edited.mp4", "direct.mp4", "side_by_side.mp4", "metrics.json"}
    # metrics are finite numbers, and every row of the table is one too
    for key in ("warping_error_direct", "warping_error_consistent", "lpips_to_direct_consistent"):
        assert isinstance(metrics[key], float) and math.isfinite(metrics[key]) and metrics[key] >= 0
    rows = {r[0]: r for r in table["data"]}
    assert rows["consistent"][1] == pytest.approx(metrics["warping_error_consistent"])
    assert rows["direct"][2] == 0.0
    # one warping error per consecutive pair and output; x-t images for each output
    per_video = {}
    for pair, value, video in curves["data"]:
        per_video.setdefault(video, []).append(value)
    assert all(len(v) == FRAMES - 1 for v in per_video.values()) and {"direct", "consistent"} <= set(per_video)
    assert {item["caption"] for item in xt} >= {"direct", "consistent"}
    assert "4 frames at 25 fps" in status
    assert status.startswith("Done in") and "Cached" not in status  # the first run of these settings


def test_same_video_and_settings_come_from_the_cache(client: Client) -> None:
    args = dict(video=handle_file(str(CLIP)), edit="angry", max_frames=FRAMES, api_name="/edit", **LIGHT)
    first = client.predict(**args)
    again = client.predict(**args)
    assert Path(first[1]).read_bytes() == Path(again[1]).read_bytes()
    assert again[8] == first[8]
    # the repeat says it is cached, and that its stage times are the first run's
    assert again[9].startswith("Cached result") and "Done in" not in again[9]
    assert "Stage times of the original run" in again[9]
    # metrics are shown rounded (4 significant digits), in the JSON and in the table alike
    from tcve.ui import significant

    floats = [v for v in first[8].values() if isinstance(v, float)]
    assert floats and all(v == significant(v) for v in floats)
    assert all(r[1] == significant(r[1]) for r in first[5]["data"])


@pytest.mark.parametrize("name, expected", [
    ("not_a_video.txt", "is not a video"),
    (None, "Upload a video first"),
])
def test_errors_come_back_as_plain_messages(client: Client, tmp_path: Path, name: str | None, expected: str) -> None:
    video = None
    if name:
        video = tmp_path / name
        video.write_text("hello")
        video = handle_file(str(video))
    with pytest.raises(Exception) as info:
        client.predict(video=video, edit="angry", api_name="/edit")
    message = str(info.value)
    assert expected in message
    assert "Traceback" not in message and "File \"" not in message


def test_no_face_is_reported(client: Client, tmp_path: Path) -> None:
    import numpy as np

    from tcve.video import write_video

    path = tmp_path / "noface.mp4"
    write_video(path, [np.full((64, 64, 3), 40 * i, np.uint8) for i in range(3)], 10)
    with pytest.raises(Exception) as info:
        client.predict(video=handle_file(str(path)), edit="angry", api_name="/edit")
    assert "face" in str(info.value).lower() and "Traceback" not in str(info.value)


def test_cancel_stops_a_running_job(client: Client) -> None:
    from gradio_client.utils import Status

    settings = {**LIGHT, "pti_steps": 3, "stitch_steps": 3}  # not in the result cache
    job = client.submit(video=handle_file(str(CLIP)), edit="surprised", max_frames=FRAMES, api_name="/edit",
                        **settings)
    deadline = time.monotonic() + 60
    while job.status().code not in (Status.PROGRESS, Status.ITERATING) and time.monotonic() < deadline:
        time.sleep(0.2)  # cancel only once the job is running (a new run clears an earlier cancel)
    assert "Cancelling" in client.predict(api_name="/cancel")
    with pytest.raises(Exception) as info:
        job.result(timeout=120)
    assert "Cancelled." in str(info.value)


def test_offline_ffhq_app_disables_unavailable_edits(tmp_path: Path) -> None:
    # offline with no checkpoint: the app still builds, every edit is listed as unavailable with its reason
    service = Service("ffhq", device="cpu", workdir=tmp_path)
    demo = app.build_demo(service)
    config = demo.get_config_file()
    buttons = {c["props"].get("elem_id"): c["props"] for c in config["components"] if c["type"] == "button"}
    assert buttons["run-in"]["interactive"] is False and buttons["run-out"]["interactive"] is False
    text = " ".join(str(c["props"].get("value")) for c in config["components"] if c["type"] == "markdown")
    assert "checkpoint not available: mapper-angry" in text and "FFHQ" in text
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        with pytest.raises(Exception) as info:
            Client(demo.local_url, verbose=False).predict(video=handle_file(str(CLIP)), edit=None,
                                                          text="a smiling face", api_name="/edit")
    finally:
        demo.close()
    assert "unavailable" in str(info.value) and "clip-vit-b-32" in str(info.value)


def test_error_messages_are_plain() -> None:
    import torch

    from tcve import ui
    from tcve.errors import CheckpointUnavailable, NoFaceFound, VideoTooLong

    missing = ui.error_message(CheckpointUnavailable("stylegan2-ffhq-1024", "org/repo", "g.pt", "offline"))
    assert missing.startswith("Checkpoint unavailable.") and "TCVE_CHECKPOINT_DIR" in missing
    assert ui.error_message(NoFaceFound("No face was found.")) == "No face was found."
    assert ui.error_message(VideoTooLong("Too long: trim it.")) == "Too long: trim it."
    assert ui.error_message(torch.cuda.OutOfMemoryError("CUDA out of memory")) == ui.OOM_MESSAGE
    assert ui.error_message(MemoryError()) == ui.OOM_MESSAGE
    assert "fewer frames" in ui.OOM_MESSAGE
    assert ui.error_message(ValueError("boom")) == "Unexpected error (ValueError): boom"


def test_stylize_end_to_end(client: Client) -> None:
    out = client.predict(video=handle_file(str(CLIP)), edit="sketch", strength=0.5, max_frames=3,
                         api_name="/stylize", **LIGHT)
    edited, metrics, status = out[1], out[8], out[9]
    assert probe(edited, limits=None).n_frames == 3
    assert math.isfinite(metrics["warping_error_consistent"]) and math.isfinite(metrics["lpips_to_direct_consistent"])
    assert "3 frames" in status


def test_api_inputs_and_outputs_have_names(client: Client) -> None:
    info = client.view_api(return_format="dict", print_info=False)
    edit = info["named_endpoints"]["/edit"]
    assert [p["parameter_name"] for p in edit["parameters"]][:5] == ["video", "edit", "text", "source_text",
                                                                      "strength"]
    for endpoint in ("/edit", "/stylize", "/cancel"):
        labels = [r["label"] for r in info["named_endpoints"][endpoint]["returns"]]
        assert labels and not any(label.startswith("value_") for label in labels), labels
    assert [r["label"] for r in edit["returns"]][-1] == "status"


@pytest.mark.parametrize("trim, says", [({"start": 10.0}, "contains no frames"),
                                        ({"start": 2.0, "end": 1.0}, "must be after the trim start")])
def test_bad_trim_gets_the_clis_message(client: Client, trim: dict, says: str) -> None:
    with pytest.raises(Exception) as info:
        client.predict(video=handle_file(str(CLIP)), edit="angry", api_name="/edit", **trim)
    message = str(info.value)
    assert says in message and "StopIteration" not in message and "Unexpected" not in message


def test_each_edits_strength_is_checked_on_the_server(client: Client, service: Service) -> None:
    smile_default, low, high = service.strength("smile")
    assert smile_default > service.strength("angry")[2]  # beyond the first edit's range: the API must take it
    with pytest.raises(Exception) as info:  # accepted (it passes on to the trim check) ...
        client.predict(video=handle_file(str(CLIP)), edit="smile", strength=smile_default, start=10.0,
                       api_name="/edit")
    assert "contains no frames" in str(info.value)
    with pytest.raises(Exception) as info:  # ... while each edit's own range is enforced
        client.predict(video=handle_file(str(CLIP)), edit="angry", strength=smile_default, api_name="/edit")
    assert "outside the range of 'angry'" in str(info.value)
    angry_default = service.strength("angry")[0]
    assert f"pass strength={angry_default:g} for the default of 'angry'" in str(info.value)  # what to send instead


def test_progress_overlay_leaves_the_face_preview_visible(service: Service) -> None:
    demo = app.build_demo(service)
    config = demo.get_config_file()
    ids = {c["props"].get("elem_id"): c["id"] for c in config["components"] if c["props"].get("elem_id")}
    face = next(c["id"] for c in config["components"] if c["props"].get("label") == "detected, aligned face")
    runs = [d for d in config["dependencies"] if d.get("api_name") in ("edit", "stylize")]
    assert len(runs) == 2
    for dep in runs:
        assert face in dep["outputs"]  # the face is an output (shown first) ...
        assert dep["show_progress_on"] and face not in dep["show_progress_on"]  # ... without the overlay
        assert ids["result-video"] in dep["show_progress_on"]


def test_error_and_status_texts_show_file_names_only() -> None:
    from tcve import ui
    from tcve.errors import CheckpointFormatError, NotAVideo

    message = ui.error_message(CheckpointFormatError("Checkpoint 'x' at /srv/cache/hub/models--a/b/x.pt is bad"))
    assert "/srv" not in message and "x.pt" in message
    assert ui.error_message(NotAVideo("'/tmp/gradio/3f2a/clip.mov' is not a video")) == "'clip.mov' is not a video"
    unexpected = ui.error_message(ValueError("no file /home/user/data/in.mp4"))
    assert unexpected == "Unexpected error (ValueError): no file in.mp4"
    assert ui.without_paths("see $TCVE_CHECKPOINT_DIR/g.pt or e4e/ffhq, 1/2 frames") == \
        "see $TCVE_CHECKPOINT_DIR/g.pt or e4e/ffhq, 1/2 frames"


def test_eta_follows_each_stages_own_rate() -> None:
    from tcve.ui import EtaEstimator, eta_text

    now = [0.0]
    eta = EtaEstimator(weights=(("invert", 0.5), ("stitch", 0.4), ("write", 0.1)), clock=lambda: now[0])
    for second in range(1, 11):  # invert: half of the bar in 10 s
        now[0] = float(second)
        eta(0.5 * second / 10, "invert: pass")
    estimates = []
    for second in range(1, 101):  # stitching: 0.4 of the bar in 100 s (ten times slower per unit)
        now[0] = 10.0 + second
        estimates.append(eta(0.5 + 0.4 * second / 100, f"stitch: frame {second}/100"))
    # half-way through stitching about 50 s of it remain, plus the short write stage
    assert 45 <= estimates[49] <= 65
    assert all(a > b for a, b in zip(estimates[10:90], estimates[11:91]))  # counts down, never sits still
    assert 10 <= estimates[89] <= 25  # 10 s of stitching, then the write stage at the run's mean rate
    assert eta_text(None) == "" and eta_text(42.4) == ", about 42 s left" and eta_text(600) == ", about 10 min left"


def test_rounding_keeps_four_significant_digits() -> None:
    from tcve.ui import significant

    assert significant(0.00012345678901234) == 0.0001235
    assert significant(123.456789) == 123.5
    assert significant({"a": [0.333333333, 2], "b": None, "c": True}) == {"a": [0.3333, 2], "b": None, "c": True}
    assert significant(0.0) == 0.0 and math.isnan(significant(float("nan")))


def test_demo_pack_edits_are_described_as_demo_pack_edits() -> None:
    from tcve.demo.models import demo_edit_loaders, demo_pack_available
    from tcve.edit import EDITS, source_note

    if not demo_pack_available():
        pytest.skip("demo pack not shipped")
    loaders = demo_edit_loaders()
    service = Service("demo", device="cpu")
    for domain in ("in", "out"):
        for name, ok, note in service.edits(domain):
            if ok:
                assert note.startswith("demo-pack"), (name, note)
                assert "provide it locally" not in note and "Hub" not in note
    # the note the pipeline puts on the status line comes from the same place
    assert source_note(EDITS["eyeglasses"].sources[0], loaders).startswith("demo-pack mapper 'eyeglasses'")
