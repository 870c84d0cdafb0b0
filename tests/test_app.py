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


def test_same_video_and_settings_come_from_the_cache(client: Client) -> None:
    args = dict(video=handle_file(str(CLIP)), edit="angry", max_frames=FRAMES, api_name="/edit", **LIGHT)
    first = client.predict(**args)
    again = client.predict(**args)
    assert Path(first[1]).read_bytes() == Path(again[1]).read_bytes()
    assert again[8] == first[8]


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
