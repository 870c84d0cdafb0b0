"""tcve's Gradio app. UI wiring only: the work lives in the tcve package."""

from __future__ import annotations

import gradio as gr

from tcve import __version__, checkpoints

DESCRIPTION = (
    "# tcve: temporally consistent semantic editing of face videos\n"
    "Edit a talking-head clip with a pretrained StyleGAN2 (in-domain text edits or out-of-domain styles) "
    "without flicker, following *Temporally Consistent Semantic Video Editing* (Xu, AlBahar, Huang, ECCV 2022)."
)


def _checkpoint_rows() -> list[list[str]]:
    return [
        [c.name, c.kind, c.location, "yes" if checkpoints.is_cached(c.name) else "no"]
        for c in checkpoints.REGISTRY.values()
    ]


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="tcve") as demo:
        gr.Markdown(DESCRIPTION)
        gr.Markdown(f"Version {__version__}. The editing UI is being built; the checkpoints it will use are below.")
        gr.Dataframe(
            value=_checkpoint_rows(), headers=["checkpoint", "kind", "location", "cached here"], interactive=False
        )
    return demo


demo = build_demo()

if __name__ == "__main__":
    demo.queue(default_concurrency_limit=1, max_size=8).launch()
