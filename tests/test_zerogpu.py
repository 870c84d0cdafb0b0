"""ZeroGPU wiring, with a stand-in ``spaces`` package that behaves like ZeroGPU's (no GPU needed).

The stand-in (``FAKE_SPACES``, written to a temporary folder and imported from there) turns CUDA "on" when it is
imported, as ZeroGPU's emulation does, refuses to be imported by gradio while gradio is loading (as the real package
does), and its ``GPU`` decorator pickles the arguments and the result across, as ZeroGPU's worker boundary does, and
records every call with its requested duration. Networks are placed on the CPU (``tensor_device``) while the service
decides for CUDA.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tcve.edit import EditSpec
from tcve.service import PRESETS, GpuCosts, JobTooLong, Service, check_fits, estimate_gpu, example_clips
from tcve.zerogpu import ZeroGPULimits

gr = pytest.importorskip("gradio")
import app  # noqa: E402
from tcve import ui  # noqa: E402
from tcve.pipeline import AlignedClip, EditedClip  # noqa: E402
from tcve.service import RunPlan  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLIP = example_clips()[0]
LIGHT = {"advanced": True, "pti_steps": 1, "phase1_epochs": 1, "phase2_epochs": 1, "pairs_per_step": 4,
         "stitch_steps": 1, "text_steps": 2, "nada_steps": 2}

FAKE_SPACES = textwrap.dedent('''
    """Stand-in for Hugging Face's `spaces` on ZeroGPU (tests only)."""
    import pickle
    import sys

    gradio = sys.modules.get("gradio")
    if gradio is not None and not hasattr(gradio, "Blocks"):
        raise ImportError("spaces refuses to be imported by gradio while gradio loads")  # as the real package

    TORCH_IMPORTED_BEFORE = "torch" in sys.modules
    import torch

    _real_is_available = torch.cuda.is_available
    torch.cuda.is_available = lambda: True  # ZeroGPU's CUDA emulation starts with this import
    calls = []
    inside = []

    def GPU(task=None, *, duration=None, size=None):
        def wrap(fn):
            def call(*args, **kwargs):
                seconds = duration(*args, **kwargs) if callable(duration) else duration
                args, kwargs = pickle.loads(pickle.dumps((args, kwargs)))  # into the worker process
                # inside the call torch sees the real device (here: none; the networks sit on the CPU)
                inside.append(torch.cuda.is_available)
                torch.cuda.is_available = _real_is_available
                try:
                    result = fn(*args, **kwargs)
                finally:
                    torch.cuda.is_available = inside.pop()
                calls.append({"fn": fn.__name__, "duration": seconds, "args": [type(a).__name__ for a in args],
                              "result": type(result).__name__})
                return pickle.loads(pickle.dumps(result))  # back to the main process
            return call
        return wrap if task is None else wrap(task)
''')


@pytest.fixture()
def fake_spaces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """ZeroGPU for one test: SPACES_ZERO_GPU set and the stand-in imported (CUDA then looks available)."""
    (tmp_path / "fake_spaces").mkdir()
    (tmp_path / "fake_spaces" / "spaces.py").write_text(FAKE_SPACES)
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setattr(torch.cuda, "is_available", torch.cuda.is_available)  # restored afterwards
    monkeypatch.delitem(sys.modules, "spaces", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path / "fake_spaces"))
    assert not torch.cuda.is_available()  # this machine: no CUDA until `import spaces`
    spaces = importlib.import_module("spaces")
    assert torch.cuda.is_available()
    yield spaces
    sys.modules.pop("spaces", None)


class CudaCounter:
    """Counts what touches CUDA: torch.cuda queries and moves of modules or tensors to a CUDA device."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        for name in ("is_available", "synchronize", "current_device", "device_count", "init"):
            original = getattr(torch.cuda, name)
            monkeypatch.setattr(torch.cuda, name, self._wrap(f"torch.cuda.{name}", original))
        for owner in (torch.Tensor, torch.nn.Module):
            monkeypatch.setattr(owner, "to", self._moves(owner.to))
            monkeypatch.setattr(owner, "cuda", self._wrap(f"{owner.__name__}.cuda", owner.cuda))

    def _wrap(self, label, fn):
        def counted(*args, **kwargs):
            self.calls.append(label)
            return fn(*args, **kwargs)
        return counted

    def _moves(self, fn):
        def to(obj, *args, **kwargs):
            targets = [*args, kwargs.get("device")]
            if any((isinstance(t, str) and t.startswith("cuda")) or (isinstance(t, torch.device) and t.type == "cuda")
                   for t in targets):
                self.calls.append(f"{type(obj).__name__}.to(cuda)")
            return fn(obj, *args, **kwargs)
        return to


class Progress:
    """A picklable stand-in for gr.Progress."""

    def __call__(self, fraction: float, desc: str | None = None) -> None:
        pass


def _handler_values(**extra) -> dict:
    return {"video": str(CLIP), "edit": "angry", "text": "", "source_text": "", "strength": None,
            "preset": "Preview", "start": 0, "end": 0, "max_frames": 4, **LIGHT, **extra}


def _run_handler(runner: ui.Runner, values: dict, on_preview=None) -> list[tuple]:
    handler = runner.edit_handler("in")
    names = list(ui.EDIT_PARAMS)
    gen = handler(*[values.get(n) for n in names], SimpleNamespace(session_hash="s1"), Progress())
    outputs = []
    for out in gen:
        if not outputs and on_preview is not None:
            on_preview()
        outputs.append(out)
    return outputs


def test_app_imports_spaces_before_torch_and_the_service_picks_cuda(tmp_path: Path) -> None:
    # A fresh interpreter, as a Space starts: `import app` must import spaces on purpose, before torch.
    (tmp_path / "spaces.py").write_text(FAKE_SPACES)
    env = {**os.environ, "SPACES_ZERO_GPU": "true", "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    code = ("import json, sys, app; spaces = sys.modules.get('spaces'); from tcve.service import Service; "
            "print(json.dumps({'imported': spaces is not None, 'torch_before': getattr(spaces, "
            "'TORCH_IMPORTED_BEFORE', None), 'device': Service('tiny').device.type}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    facts = json.loads(out.stdout.strip().splitlines()[-1])
    assert facts == {"imported": True, "torch_before": False, "device": "cuda"}


def test_zerogpu_run_goes_through_one_gpu_call_and_the_preview_stays_on_the_cpu(
        fake_spaces, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    service = Service("tiny", device="auto", workdir=tmp_path / "out", tensor_device="cpu")
    assert service.zerogpu and service.device.type == "cuda"
    assert app.startup(service) is service and service.loaded  # networks built at start-up, before launch
    assert next(service.models().generator.parameters()).device.type == "cpu"  # placement faked on this machine
    fetched_before_gpu_calls = []
    fetch = service.fetch_edit_checkpoints
    monkeypatch.setattr(service, "fetch_edit_checkpoints",
                        lambda *a, **k: fetched_before_gpu_calls.append(len(fake_spaces.calls)) or fetch(*a, **k))
    runner = ui.Runner(service)
    counter = CudaCounter(monkeypatch)
    seen_at_preview: dict = {}

    def at_preview() -> None:
        seen_at_preview.update(gpu_calls=len(fake_spaces.calls), cuda=list(counter.calls))

    outputs = _run_handler(runner, _handler_values(), at_preview)
    assert seen_at_preview == {"gpu_calls": 0, "cuda": []}  # preview: no GPU call, nothing touched CUDA
    assert "Reserving" in outputs[0][-1] and "ZeroGPU" in outputs[0][-1]
    assert counter.calls == []  # the whole run: CUDA is only ever emulated here, and nothing asked for it
    # exactly one GPU call, with plain picklable arguments and result, sized by the service's cost model
    assert [c["fn"] for c in fake_spaces.calls] == ["_edit_on_device"]
    call = fake_spaces.calls[0]
    assert call["args"] == [RunPlan.__name__, AlignedClip.__name__, "Progress", "str"]
    assert call["result"] == EditedClip.__name__
    plan = service.plan(str(CLIP), EditSpec("angry"), "Preview", 0.0, None, 4,
                        service.config_for("Preview", EditSpec("angry"), {k: v for k, v in LIGHT.items()
                                                                          if k != "advanced"}))
    assert call["duration"] == plan.estimate.seconds
    assert fetched_before_gpu_calls == [0]  # the edit's checkpoints are fetched before the GPU call opens
    face, edited, direct, side, files, table, curves, xt, metrics, status = outputs[-1]
    assert Path(edited).exists() and "4 frames" in status


def test_edit_checkpoints_are_fetched_with_progress_outside_the_gpu_call(monkeypatch: pytest.MonkeyPatch) -> None:
    from tcve import checkpoints
    from tcve.errors import CheckpointUnavailable

    fetched, messages = [], []

    def fake_fetch(name):
        fetched.append(name)
        if name == "mapper-eyeglasses":  # not hosted: the edit's next source is fetched instead
            raise CheckpointUnavailable(name, None, name)
        return name

    monkeypatch.setattr(checkpoints, "fetch", fake_fetch)
    monkeypatch.setattr(checkpoints, "is_cached", lambda name: False)
    service = Service("ffhq", device="cpu", zerogpu=True)
    service.fetch_edit_checkpoints(EditSpec("eyeglasses"), lambda f, m: messages.append(m))
    assert fetched == ["mapper-eyeglasses", "interfacegan-eyeglasses"]
    assert messages[-1] == "checkpoints: interfacegan-eyeglasses (downloading)"
    fetched.clear()
    service.fetch_edit_checkpoints(EditSpec("text style", target_text="oil painting"), None)
    assert "clip-vit-b-32" in fetched  # CLIP (605 MB) too, before the call


def test_networks_load_at_start_up_only_on_zerogpu() -> None:
    assert not app.startup(Service("tiny", device="cpu", zerogpu=False)).loaded  # lazily, with progress, elsewhere
    assert app.startup(Service("tiny", device="cpu", zerogpu=True)).loaded


def test_preview_face_never_calls_the_gpu_function_nor_cuda(fake_spaces, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    service = app.startup(Service("tiny", device="auto", workdir=tmp_path, tensor_device="cpu"))
    counter = CudaCounter(monkeypatch)
    face = service.preview_face(CLIP)
    size = int(service.models().generator.size)
    assert face.shape == (size, size, 3) and face.dtype.name == "uint8"
    assert counter.calls == [] and fake_spaces.calls == []


def test_zerogpu_landmarks_are_built_for_the_cpu(fake_spaces, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    monkeypatch.setattr("tcve.landmarks.load_detector", lambda name="auto", **kw: seen.append((name, kw)) or name)
    Service("ffhq", device="auto", zerogpu=True).landmark_detector()
    Service("ffhq", device="cpu", zerogpu=False).landmark_detector()
    assert seen == [("auto", {"device": "cpu"}), ("auto", {})]


def test_torch_compile_is_turned_off_on_zerogpu(tmp_path: Path) -> None:
    for zerogpu, expected in ((True, False), (False, True)):
        service = Service("tiny", device="cpu", workdir=tmp_path, zerogpu=zerogpu)
        config = service.config_for("Preview", EditSpec("angry"))
        config = replace(config, consistency=replace(config.consistency, compile=True))
        plan = service.plan(str(CLIP), EditSpec("angry"), "Preview", max_frames=2, config=config)
        assert plan.config.consistency.compile is expected


def test_duration_comes_from_the_cost_model() -> None:
    costs = GpuCosts()
    config = Service("tiny", device="cpu").config_for("Paper settings", EditSpec("angry"))
    est = estimate_gpu(config, 150, 1024, "in", "mapper", costs)
    # official iteration counts at 1024: PTI 200 x 150 frame passes, phase 1 10 x 149 pairs, phase 2 3 x 149,
    # stitching 50 x 150 steps, per-frame work and the start-up
    stages = {"start-up": costs.start, "PTI": 200 * 150 * costs.pti_frame_pass,
              "phase 1": 10 * 149 * costs.consistency_pair, "phase 2": 3 * 149 * costs.consistency_pair,
              "stitching": 50 * 150 * costs.stitch_step, "per-frame work": 150 * costs.per_frame}
    assert est.stages == pytest.approx(stages)
    assert est.seconds == math.ceil(sum(stages.values()) * costs.margin)
    # halving the PTI passes removes half of the PTI term; a 64 px generator costs (64/1024)^2 of the work
    halved = replace(config, inversion=replace(config.inversion, pti=replace(config.inversion.pti, steps=100)))
    fewer = estimate_gpu(halved, 150, 1024, "in", "mapper", costs)
    assert fewer.stages["PTI"] == pytest.approx(stages["PTI"] / 2)
    small = estimate_gpu(config, 150, 64, "in", "mapper", costs)
    assert small.stages["PTI"] == pytest.approx(stages["PTI"] / 256)
    # what the service reports for a preset (the rehearsal prints it) is the same model at the generator's size
    service = Service("tiny", device="cpu")
    assert service.estimate_seconds("Paper settings", 150) == estimate_gpu(
        config, 150, int(service.models().generator.size), "in", "mapper", costs).seconds
    # out-of-domain: no PTI and no stitching
    out = estimate_gpu(config, 150, 1024, "out", "nada", costs)
    assert out.stages["PTI"] == 0 and out.stages["stitching"] == 0


def test_measured_stage_times_become_the_costs_that_size_the_duration(tmp_path: Path, monkeypatch) -> None:
    from tcve.gpu_costs import COSTS_ENV, MeasuredRun, fit_costs, pair_count

    config = Service("tiny", device="cpu").config_for("Paper settings", EditSpec("angry"))
    cons = replace(config.consistency, pairs_per_step=1, phase1=replace(config.consistency.phase1, epochs=2),
                   phase2=replace(config.consistency.phase2, epochs=2))
    run = MeasuredRun(frames=150, size=1024, pti_passes=2, stitch_steps=2, consistency_config=cons,
                      invert=30.0, edit=3.0, consistency=119.2, stitch=12.0, start=11.0)
    costs = fit_costs(run, source="measured: test")
    assert pair_count(cons, 150, 2) == 2 * 149
    assert costs.pti_frame_pass == pytest.approx(30.0 / 300) and costs.stitch_step == pytest.approx(12.0 / 300)
    assert costs.consistency_pair == pytest.approx(119.2 / 596) and costs.start == 11.0
    assert costs.per_frame == GpuCosts().per_frame  # 0.02 s/frame measured is below the model's floor
    # the fitted costs give back the measured stage times for the measured settings
    measured = replace(config, consistency=cons,
                       inversion=replace(config.inversion, pti=replace(config.inversion.pti, steps=2)),
                       stitch=replace(config.stitch, steps=2))
    back = estimate_gpu(measured, 150, 1024, "in", "mapper", costs)
    assert back.stages["PTI"] == pytest.approx(30.0) and back.stages["stitching"] == pytest.approx(12.0)
    assert back.stages["phase 1"] + back.stages["phase 2"] == pytest.approx(119.2)
    # a file for $TCVE_GPU_COSTS: what Service.from_env sizes ZeroGPU calls with
    path = costs.save(tmp_path / "costs.json")
    assert GpuCosts.load(path) == costs
    monkeypatch.setenv(COSTS_ENV, str(path))
    monkeypatch.setenv("TCVE_MODELS", "tiny")
    service = Service.from_env()
    assert service.costs == costs and service.estimate_seconds("Paper settings", 150) == estimate_gpu(
        config, 150, int(service.models().generator.size), "in", "mapper", costs).seconds
    (tmp_path / "bad.json").write_text('{"pti_frame_pass": -1}')
    with pytest.raises(ValueError, match="bad.json: pti_frame_pass must be positive"):
        GpuCosts.load(tmp_path / "bad.json")
    (tmp_path / "odd.json").write_text('{"pti_pass": 1}')
    with pytest.raises(ValueError, match="odd.json has unknown fields"):
        GpuCosts.load(tmp_path / "odd.json")


def test_a_job_too_long_for_zerogpu_is_refused_before_any_work(fake_spaces, tmp_path: Path) -> None:
    limits = ZeroGPULimits(max_call_seconds=30)
    service = app.startup(Service("tiny", device="auto", workdir=tmp_path / "out", tensor_device="cpu",
                                  limits=limits))
    detections = []
    detector = service.models().detector
    service.models().detector = lambda frame: detections.append(1) or detector(frame)
    runner = ui.Runner(service)
    values = _handler_values(advanced=False, max_frames=4, preset="Paper settings")
    with pytest.raises(gr.Error) as info:
        _run_handler(runner, values)
    config = service.config_for("Paper settings", EditSpec("angry"))
    expected = estimate_gpu(config, 4, int(service.models().generator.size), "in", "mapper", service.costs)
    message = str(info.value)
    assert f"4 frames need about {expected.seconds} s" in message
    assert f"{expected.seconds * limits.duration_factor:.0f} s (x1.5)" in message and "30 s a call" in message
    assert "PRO / Team 40 min" in message  # the quotas are explained
    assert fake_spaces.calls == [] and detections == [] and not (tmp_path / "out").exists()  # no work at all
    # the same limits, from the library: check_fits raises with the same numbers
    with pytest.raises(JobTooLong, match=f"{expected.seconds} s of GPU time"):
        check_fits(expected, limits)


def test_paper_settings_on_a_full_clip_exceed_one_call_and_say_what_fits() -> None:
    config = Service("tiny", device="cpu").config_for("Paper settings", EditSpec("angry"))
    est = estimate_gpu(config, 150, 1024, "in", "mapper")
    limits = ZeroGPULimits()
    with pytest.raises(JobTooLong) as info:
        check_fits(est, limits)
    fit = int(info.value.args[0].split("At most about ")[1].split(" frames")[0])
    assert 1 <= fit < 150
    assert estimate_gpu(config, fit, 1024, "in", "mapper").seconds * limits.duration_factor <= limits.max_call_seconds
    assert estimate_gpu(config, fit + 2, 1024, "in", "mapper").seconds * limits.duration_factor > \
        limits.max_call_seconds
    check_fits(estimate_gpu(Service("tiny", device="cpu").config_for("Preview", EditSpec("angry")),
                            PRESETS["Preview"].max_frames, 1024, "in", "mapper"), limits)  # Preview fits


def _front_matter() -> dict:
    import yaml

    text = (ROOT / "README.md").read_text()
    return yaml.safe_load(text.split("---")[1])


def test_front_matter_names_a_python_the_requirements_and_zerogpu_support() -> None:
    from importlib.metadata import PackageNotFoundError, metadata

    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    meta = _front_matter()
    python = str(meta["python_version"])
    assert python in {"3.12.12", "3.10.13"}  # ZeroGPU's supported Pythons (hub-docs, spaces-zerogpu.md)
    reqs = [Requirement(line.split("#")[0].strip()) for line in (ROOT / "requirements.txt").read_text().splitlines()
            if line.split("#")[0].strip()]
    env = {"python_version": ".".join(python.split(".")[:2]), "python_full_version": python}
    on_space = {r.name.lower(): r for r in reqs if r.marker is None or r.marker.evaluate(env)}
    for name, req in on_space.items():  # every installed pinned package accepts that Python
        try:
            requires = metadata(name).get("Requires-Python")
        except PackageNotFoundError:
            continue
        if requires:
            assert SpecifierSet(requires).contains(python), (name, requires)
    assert str(on_space["torch"].specifier) == "==2.13.0"  # on ZeroGPU's PyTorch list
    assert "spaces" in on_space
    assert str(meta["sdk_version"]) == str(on_space["gradio"].specifier).lstrip("=")


def test_front_matter_preloads_the_ffhq_checkpoints_at_build_time() -> None:
    from tcve import checkpoints
    from tcve.service import FFHQ_REQUIRED

    preload = _front_matter()["preload_from_hub"]
    files = {}
    for item in preload:
        repo, names = item.split()[:2]
        files.setdefault(repo, set()).update(names.split(","))
    by_location = {(c.repo_id, c.filename) for c in checkpoints.REGISTRY.values() if c.repo_id}
    assert all((repo, f) in by_location for repo, names in files.items() for f in names)  # registry files only
    hub_hosted = [checkpoints.REGISTRY[n] for n in (*FFHQ_REQUIRED, "clip-vit-b-32")
                  if checkpoints.REGISTRY[n].repo_id and checkpoints.REGISTRY[n].repo_type == "model"]
    assert hub_hosted and all(c.filename in files.get(c.repo_id, ()) for c in hub_hosted)
