"""Nothing left behind, nothing shared: per-job work folders, bounded caches, upload limit, cancel while queued."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tcve import service as service_module
from tcve.cache import StageCache
from tcve.edit import EditSpec
from tcve.errors import TcveError
from tcve.service import Service

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.mp4"


def test_stage_cache_evicts_least_recently_used_entries(tmp_path):
    cache = StageCache(tmp_path, max_bytes=None)
    one = cache.save("invert", "a" * 64, {"x": torch.zeros(1000)})
    size = one.stat().st_size
    cache = StageCache(tmp_path, max_bytes=int(2.5 * size))  # room for two entries
    for i, key in enumerate(("b" * 64, "c" * 64)):
        cache.save("invert", key, {"x": torch.full((1000,), float(i))})
        time.sleep(0.02)  # distinct modification times
    assert not cache.contains("invert", "a" * 64)  # the oldest went when the third arrived
    assert cache.load("invert", "b" * 64) is not None  # a hit makes "b" the most recently used
    time.sleep(0.02)
    cache.save("invert", "d" * 64, {"x": torch.ones(1000)})
    assert cache.contains("invert", "b" * 64) and cache.contains("invert", "d" * 64)
    assert not cache.contains("invert", "c" * 64)
    assert cache.size() <= cache.max_bytes
    assert StageCache(tmp_path).max_bytes == 5 * 2**30  # the default cap (TCVE_CACHE_MAX_GB)


class _FakeResult:
    def __init__(self, out: Path) -> None:
        self.output, self.messages = out / "edited.mp4", []


@pytest.fixture
def fake_runs(monkeypatch):
    """The pipeline's parts replaced by fakes (no networks run): the write part records its output folder and writes
    one file; a strength of 0.25 fails while writing, after the folder exists."""
    seen: list[Path] = []

    def edit_aligned(path, aligned, spec, models, config, progress, cancel):
        time.sleep(0.3)  # long enough for two runs to overlap
        return spec

    def write_outputs(path, aligned, spec, output_dir, config, progress, cancel):
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        seen.append(out)
        if spec.strength == 0.25:
            raise RuntimeError("boom")
        (out / "edited.mp4").write_bytes(b"x")
        return _FakeResult(out)

    monkeypatch.setattr(service_module, "align_clip", lambda *args, **kwargs: None)
    monkeypatch.setattr(service_module, "edit_aligned", edit_aligned)
    monkeypatch.setattr(service_module, "write_outputs", write_outputs)
    monkeypatch.setattr(Service, "prepare", lambda self, progress=None: None)  # no checkpoints needed
    monkeypatch.setattr(Service, "fetch_edit_checkpoints", lambda self, spec, progress=None: None)
    monkeypatch.setattr(Service, "config_for", lambda self, preset, spec, overrides=None:
                        service_module.PRESETS["Preview"].config)
    return seen


def test_each_job_gets_its_own_work_folder_and_old_results_are_deleted(tmp_path, fake_runs):
    service = Service("tiny", device="cpu", workdir=tmp_path / "runs", max_cached_results=1)
    threads = [threading.Thread(target=service.run, args=(EXAMPLE, EditSpec("angry"))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fake_runs) == 2 and fake_runs[0] != fake_runs[1]  # the same clip at the same time: two folders
    service.run(EXAMPLE, EditSpec("angry", strength=0.05))  # another result pushes the cached one out
    remaining = [p for p in (tmp_path / "runs").iterdir()]
    assert remaining == [fake_runs[-1]]  # only the cached result's folder is kept (bounded result cache)
    with pytest.raises(RuntimeError):
        service.run(EXAMPLE, EditSpec("angry", strength=0.25))
    assert [p for p in (tmp_path / "runs").iterdir()] == [fake_runs[-2]]  # a failed run leaves no folder


class _Request:
    session_hash = "session-1"


def test_cancel_while_queued_drops_the_job(tmp_path, monkeypatch):
    gr = pytest.importorskip("gradio")
    from tcve.ui import EDIT_PARAMS, Runner

    service = Service("tiny", device="cpu", workdir=tmp_path)
    calls = []
    monkeypatch.setattr(service, "preview_face", lambda path, options: np.zeros((8, 8, 3), np.uint8))
    # the handler's first step of a run that goes ahead: checks and settings (``plan``)
    monkeypatch.setattr(service, "plan", lambda *args, **kwargs: calls.append(args) or (_ for _ in ()).throw(
        RuntimeError("ran")))
    runner = Runner(service)
    handler = runner.edit_handler("in")
    values = {"video": str(EXAMPLE), "edit": "angry", "preset": "Preview"}

    def edit(ticket):
        values["queue_ticket"] = ticket
        return list(handler(*[values.get(name) for name in EDIT_PARAMS], _Request(), lambda *a, **k: None))

    queued = runner.submitted()  # queued behind someone else's job
    runner.cancel(_Request())  # ... and cancelled while it waits
    with pytest.raises(gr.Error, match="Cancelled while waiting in the queue"):
        edit(queued)
    assert calls == []  # on main: it ran after "Cancelling after the current step..."
    with pytest.raises(gr.Error, match="ran"):
        edit(runner.submitted())  # a new job after the cancel runs
    assert len(calls) == 1

    refused = runner.submitted()  # its job was refused by the full queue: it never starts
    runner.cancel(_Request())  # the user cancels something else
    later = runner.submitted()
    with pytest.raises(gr.Error, match="ran"):
        edit(later)  # before: the refused job's queue time was taken for this one, which was dropped
    assert len(calls) == 2 and refused < later
    with pytest.raises(gr.Error, match="ran"):
        edit(None)  # no ticket (an API client calling /edit itself): never dropped by the session's cancel


def test_an_api_client_drops_its_queued_job_with_a_ticket(tmp_path, monkeypatch):
    pytest.importorskip("gradio")
    from gradio_client import Client, handle_file

    import app

    service = Service("tiny", device="cpu", workdir=tmp_path)
    started, release = [], threading.Event()

    def plan(path, spec, *args, **kwargs):  # the first step of a run: hold the first job, then fail fast
        started.append(spec.strength)
        release.wait(30)
        raise TcveError("stopped here")

    monkeypatch.setattr(service, "plan", plan)
    monkeypatch.setattr(service, "preview_face", lambda path, options: np.zeros((8, 8, 3), np.uint8))
    demo = app.build_demo(service)
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        video = handle_file(str(EXAMPLE))
        first = client.submit(video=video, edit="angry", strength=0.05, api_name="/edit")
        deadline = time.monotonic() + 30
        while not started and time.monotonic() < deadline:
            time.sleep(0.05)
        ticket = client.predict(api_name="/queue_ticket")
        second = client.submit(video=video, edit="angry", strength=0.07, queue_ticket=ticket, api_name="/edit")
        time.sleep(0.5)  # the second job waits in gradio's queue, behind the first
        client.predict(api_name="/cancel")
        release.set()
        with pytest.raises(Exception, match="stopped here"):
            first.result(timeout=60)  # the running job went on to its own end
        with pytest.raises(Exception, match="Cancelled while waiting in the queue"):
            second.result(timeout=60)
        assert started == [0.05]  # the queued job never started (gradio_client's job.cancel() lets it run)
    finally:
        release.set()
        demo.close()


def test_app_limits_uploads_and_gives_cached_files_a_lifetime(tmp_path, monkeypatch):
    pytest.importorskip("gradio")
    import httpx

    import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GRADIO_TEMP_DIR", "unset")  # recorded, so the variable is gone again after the test
    monkeypatch.delenv("GRADIO_TEMP_DIR")
    assert app.use_relative_upload_folder() == app.UPLOAD_FOLDER
    demo = app.build_demo(Service("tiny", device="cpu", workdir=tmp_path / "runs"))
    assert demo.delete_cache == app.CACHE_LIFETIME and all(v > 0 for v in app.CACHE_LIFETIME)
    assert any(getattr(fn.fn, "__name__", "") == "submitted" and not fn.queue for fn in demo.fns.values())
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, **app.launch_options(0.5))
    try:
        files = {"files": ("junk.mp4", b"\0" * 1_000_000, "video/mp4")}
        response = httpx.post(demo.local_url.rstrip("/") + "/gradio_api/upload", files=files, timeout=30)
        assert response.status_code == 413, response.text  # refused: over the 0.5 MB limit
        small = httpx.post(demo.local_url.rstrip("/") + "/gradio_api/upload",
                           files={"files": ("ok.mp4", b"\0" * 1000, "video/mp4")}, timeout=30)
        assert small.status_code == 200
        (stored,) = small.json()
        # before: the server's absolute temp path (/tmp/gradio/<sha256>/ok.mp4); now relative, the file's name last
        assert not Path(stored).is_absolute() and Path(stored).parts[0] == app.UPLOAD_FOLDER, stored
        assert Path(stored).name == "ok.mp4" and (tmp_path / stored).is_file()
    finally:
        demo.close()


def test_a_run_says_its_cut_first(tmp_path, fake_runs):
    from tcve.video import write_video

    clip = write_video(tmp_path / "clip.mp4", [np.full((32, 32, 3), i * 10, np.uint8) for i in range(20)], 10)
    result = Service("tiny", device="cpu", workdir=tmp_path / "runs").run(clip, EditSpec("angry"), "Preview")
    assert result.messages[0].startswith("Only the first 8 of the 20 frames are edited")  # on main: silent
