"""tcve's Gradio app. UI wiring only: the work lives in tcve.service / tcve.pipeline, the handlers in tcve.ui.

``python app.py`` serves it with ``startup()``: ``Service.from_env()`` (the FFHQ checkpoints when they can be had, the
bundled demo models otherwise), its networks loaded before launch on ZeroGPU; tests build it with an injected service:
``build_demo(Service("tiny"))``.
"""

from __future__ import annotations

from tcve.zerogpu import on_zerogpu  # no torch behind this import

if on_zerogpu():
    # On purpose and first: importing `spaces` patches torch for ZeroGPU's CUDA emulation, which must happen before
    # anything imports torch or touches CUDA (gradio's own attempt to import it is refused while gradio loads).
    import spaces  # noqa: F401

import os  # noqa: E402

import gradio as gr  # noqa: E402

from tcve import __version__, ui  # noqa: E402
from tcve.service import PRESETS, SETTINGS, Service, example_clips  # noqa: E402

QUEUE_SIZE = 8  # waiting jobs beyond the one running; more are refused with "queue full"
# Gradio's copies of uploads and results: checked every hour, deleted when older than a day.
CACHE_LIFETIME = (3600, 86400)
MAX_UPLOAD_MB = 200  # larger uploads are refused before they are stored
# Gradio's upload folder, relative to the working directory: its upload responses then name the file by this
# relative path instead of the server's absolute temp path ($GRADIO_TEMP_DIR, where set, wins).
UPLOAD_FOLDER = ".gradio-uploads"


def launch_options(max_upload_mb: float = MAX_UPLOAD_MB) -> dict[str, int]:
    """``launch()`` arguments: the upload size limit (bytes)."""
    return {"max_file_size": int(max_upload_mb * 2**20)}


def use_relative_upload_folder(folder: str = UPLOAD_FOLDER) -> str:
    """Point Gradio's upload folder at ``folder`` (relative) unless ``$GRADIO_TEMP_DIR`` is set; call before
    ``launch()``, which reads it. Returns the folder in use."""
    return os.environ.setdefault("GRADIO_TEMP_DIR", folder)

DESCRIPTION = (
    "# tcve: temporally consistent semantic editing of face videos\n"
    "Edit the face in a short talking-head clip with a pretrained StyleGAN2 (in-domain edits or out-of-domain "
    "styles) without flicker, following *Temporally Consistent Semantic Video Editing* (Xu, AlBahar, Huang, "
    "ECCV 2022). Upload a clip (or record one), pick an edit, press the button; the Compare tab shows the direct "
    "per-frame edit next to the consistent one, with the metrics."
)

ABOUT = f"""
### Method
Every frame is aligned and inverted into StyleGAN2's W+ space (encoder, then pivotal tuning). A per-frame (direct)
edit flickers; tcve then optimises the edited latents (phase 1) and the generator (phase 2) so that neighbouring
frames agree after warping with optical flow, stitches the edited crop into the frame (phase 3, in-domain edits) and
pastes it back, keeping the audio.

### Metrics
**E_warp**: the warping error (Lai et al. 2018) on the aligned crops, flows from the input clip; lower is more stable.
**LPIPS to direct**: how far the consistent result moved from the direct edit; small means the edit is kept.
**TL-ID / TG-ID** (Stitch-it-in-Time): frame-to-frame (all-pairs) identity similarity of the result relative to the
input's, 1 = as consistent as the input; **ID-sim**: identity similarity to the input (ArcFace on FFHQ).
The x-t images stack one scanline of every frame: flicker shows as horizontal streaks.

### Limits
One face per clip (the largest), mostly frontal; short clips (see the presets' frame caps); heavy occlusions,
profile views and fast motion degrade the result. Without network access the app runs the bundled demo models,
trained on procedural cartoon faces: they edit the demo clips (examples) for real, not real faces (the banner says
which models are active).

### Citation
```
@inproceedings{{xu2022videoeditgan,
  title={{Temporally Consistent Semantic Video Editing}},
  author={{Xu, Yiran and AlBahar, Badour and Huang, Jia-Bin}},
  booktitle={{ECCV}}, year={{2022}}
}}
```
tcve {__version__}.
"""


def _edit_controls(service: Service, domain: str, button: str) -> dict[str, gr.components.Component]:
    rows = service.edits(domain)
    free = service.free_text_edit(domain)
    names = [n for n, ok, _ in rows if ok and n != free]
    missing = [f"**{n}**: {note}" for n, ok, note in rows if not ok]
    free_ok = next((ok, note) for n, ok, note in rows if n == free)
    default = service.strength(names[0])[0] if names else 1.0
    # The slider spans every edit's range (the API accepts each edit's own strengths); the server checks the
    # chosen edit's range, and picking an edit narrows the slider to it.
    ranges = [service.strength(n)[1:] for n in names] or [(0.0, 1.0)]
    lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
    c = {
        "edit": gr.Dropdown(names, value=names[0] if names else None, label="edit" if domain == "in" else "style",
                            interactive=bool(names), info=None if names else "no edit can run here (see below)"),
        "text": gr.Textbox("", label="or free text (overrides the list)", interactive=free_ok[0],
                           placeholder="e.g. a face with a beard" if domain == "in" else "e.g. an oil painting",
                           info=None if free_ok[0] else f"unavailable: {free_ok[1]}"),
        "source_text": gr.Textbox("", label="source text of the free text (optional)", interactive=free_ok[0],
                                  placeholder="face" if domain == "in" else "photo"),
        "strength": gr.Slider(lo, hi, value=default, label="strength"),
        "button": gr.Button(button, variant="primary", interactive=bool(names) or free_ok[0],
                            elem_id=f"run-{domain}"),
    }
    if missing:
        with gr.Accordion(f"Unavailable here ({len(missing)})", open=False):
            gr.Markdown("\n".join(f"- {m}" for m in missing))

    def strength_for(name: str | None, text: str | None) -> gr.Slider:
        chosen = free if (text or "").strip() else name
        if not chosen:
            return gr.Slider()
        value, low, high = service.strength(chosen)
        return gr.Slider(minimum=low, maximum=high, value=value)

    gr.on([c["edit"].change, c["text"].change], strength_for, [c["edit"], c["text"]], c["strength"],
          queue=False, show_progress="hidden", api_visibility="undocumented")
    return c


def build_demo(service: Service | None = None) -> gr.Blocks:
    service = service or Service.from_env()
    runner = ui.Runner(service)
    defaults = service.settings("Preview", "in")
    with gr.Blocks(title="tcve", delete_cache=CACHE_LIFETIME) as demo:
        gr.Markdown(DESCRIPTION)
        gr.Markdown(service.banner, elem_id="banner")
        with gr.Row():
            with gr.Column(scale=2):
                video = gr.Video(label="input video", sources=["upload", "webcam"], include_audio=True,
                                 elem_id="input-video")
                clips = example_clips(service.model_set)
                examples = gr.Examples([[str(p)] for p in clips], inputs=[video], elem_id="examples",
                                       example_labels=[p.stem for p in clips],
                                       label="examples (a click runs the in-domain edit)")
                with gr.Row():
                    start = gr.Number(0, label="trim start (s)", minimum=0)
                    end = gr.Number(0, label="trim end (s; 0: to the end)", minimum=0)
                    max_frames = gr.Number(0, precision=0, minimum=0, label="frame cap (0: the preset's)")
                with gr.Row():
                    stride = gr.Number(1, precision=0, minimum=1, label="frame stride (keep every n-th frame)")
                    max_side = gr.Number(0, precision=0, minimum=0, label="downscale to (px, longest side; 0: off)")
                preset = gr.Radio(list(PRESETS), value="Preview", label="preset")
                preset_info = gr.Markdown(PRESETS["Preview"].description)
                with gr.Accordion("advanced settings", open=False):
                    advanced = gr.Checkbox(False, label="use these settings instead of the preset's")
                    knobs = [gr.Slider(s.minimum, s.maximum, value=defaults[s.key], step=1, label=s.label,
                                       info=s.info) for s in SETTINGS]
                face = gr.Image(label="detected, aligned face", interactive=False, height=192,
                                elem_id="face-preview")
            with gr.Column(scale=3):
                with gr.Tabs():
                    with gr.Tab("In-domain edit"):
                        in_c = _edit_controls(service, "in", "Edit")
                    with gr.Tab("Out-of-domain style"):
                        out_c = _edit_controls(service, "out", "Stylize")
                    with gr.Tab("Compare"):
                        side = gr.Video(label="input | direct | consistent (one video: plays in sync)",
                                        elem_id="side-by-side")
                        table = gr.Dataframe(headers=list(ui.METRIC_COLUMNS), label="metrics", interactive=False)
                        curves = gr.LinePlot(x="pair", y="warping error", color="video",
                                             label="warping error per frame pair")
                        xt = gr.Gallery(label="x-t scanline images", columns=4, height=220)
                        metrics = gr.JSON(label="all metrics")
                    with gr.Tab("About"):
                        gr.Markdown(ABOUT)
                status = gr.Markdown(elem_id="status", label="status")
                with gr.Row():
                    edited = gr.Video(label="edited (consistent, with audio)", elem_id="result-video")
                    direct = gr.Video(label="direct per-frame edit", elem_id="direct-video")
                files = gr.File(label="downloads", file_count="multiple")
                cancel = gr.Button("Cancel", variant="stop")

        shared = [preset, start, end, max_frames, stride, max_side, advanced, *knobs]
        outputs = [face, edited, direct, side, files, table, curves, xt, metrics, status]
        # Progress shows on the result videos only: the aligned face (first output) stays visible during the run.
        run = dict(outputs=outputs, concurrency_limit=1, concurrency_id="gpu", show_progress_on=[edited, direct])
        # The job's queue ticket (from ``submitted``, a step outside the queue) rides along with its inputs, so
        # Cancel can drop it while it waits.
        ticket = gr.Number(0, precision=0, visible=False)  # 0: none
        for c, domain, name in ((in_c, "in", "edit"), (out_c, "out", "stylize")):
            inputs = [video, c["edit"], c["text"], c["source_text"], c["strength"], *shared, ticket]
            handler = runner.edit_handler(domain)
            c["button"].click(runner.submitted, None, ticket, queue=False, api_visibility="private").then(
                handler, inputs, api_name=name, **run)
            if domain == "in":
                examples.load_input_event.then(runner.submitted, None, ticket, queue=False,
                                               api_visibility="private").then(
                    handler, inputs, api_visibility="undocumented", **run)
        cancel.click(runner.cancel, None, status, queue=False, api_name="cancel")
        # API clients take a ticket the same way and pass it as /edit's queue_ticket; /cancel then drops the job
        # while it waits (gradio_client's own job.cancel() leaves a queued job to run on the server).
        gr.api(runner.submitted, api_name="queue_ticket", queue=False)

        def preset_changed(name: str) -> list:
            values = service.settings(name, "in")
            return [PRESETS[name].description, *(gr.Slider(value=values[s.key]) for s in SETTINGS)]

        preset.change(preset_changed, preset, [preset_info, *knobs], queue=False, show_progress="hidden",
                      api_visibility="undocumented")
    demo.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)
    return demo


def startup(service: Service | None = None) -> Service:
    """The service ``python app.py`` serves. On ZeroGPU its networks are built and put on ``cuda`` now, before
    launch: ZeroGPU expects models on the (emulated) device at start-up and moves them to the real GPU per call."""
    service = service or Service.from_env()
    if service.zerogpu:
        service.prepare(lambda fraction, message: print(f"start-up: {message}", flush=True))
    return service


if __name__ == "__main__":
    use_relative_upload_folder()
    build_demo(startup()).launch(**launch_options())
