"""The web app (Gradio): every task that has weights in the catalog, in one page, with limits that make it
safe to expose. `launch(AppSettings(...))` serves it; `build_app(settings)` returns the `gr.Blocks`.
Importing this package is light; Gradio and torch load when the app is built."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import gradio as gr

__all__ = ["AppSettings", "build_app", "launch"]


@dataclass
class AppSettings:
    """Limits and network options of one app server; the `img2img app` flags map onto these."""

    host: str = "127.0.0.1"  # loopback only unless asked
    port: int = 7860
    share: bool = False  # public tunnel link
    max_pixels: int = 4_000_000  # decoded input pixels, checked from the header before decoding
    max_file_mb: float = 20.0  # upload size; larger requests get HTTP 413
    timeout: float = 300.0  # seconds of work per request before it is stopped
    queue_size: int = 16  # requests waiting for the model; more are refused ("queue is full")
    cache_every: int = 600  # seconds between sweeps of uploads and results ...
    cache_age: int = 3600  # ... older than this many seconds
    engine: str = "torch"  # image -> image models: torch, compile (torch.compile) or onnxruntime (fp32 on the CPU)


def build_app(settings: AppSettings | None = None) -> gr.Blocks:
    """The app as a `gr.Blocks` with its queue configured (see `img2img.app.ui`)."""
    from img2img.app import ui

    return ui.build_app(settings or AppSettings())


def launch(settings: AppSettings | None = None, *, prevent_thread_lock: bool = False, quiet: bool = False):
    """Build and serve the app; blocks until stopped unless `prevent_thread_lock`. Returns the `gr.Blocks`
    (its `.local_url` is the address; `.close()` stops it)."""
    settings = settings or AppSettings()
    # Nothing phones home: usage analytics off for this Blocks and anything else that reads the variable.
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    demo = build_app(settings)
    demo.launch(
        server_name=settings.host,
        server_port=settings.port,
        share=settings.share,
        max_file_size=int(settings.max_file_mb * 2**20),
        allowed_paths=[],  # examples are copied into Gradio's cache when the page is built
        show_error=False,  # only our readable gr.Error messages reach the browser
        quiet=quiet,
        prevent_thread_lock=prevent_thread_lock,
        inbrowser=False,
        enable_monitoring=False,
        run_history=False,
        ssr_mode=False,
        mcp_server=False,
        pwa=False,
        footer_links=["api", "gradio"],
    )
    return demo
