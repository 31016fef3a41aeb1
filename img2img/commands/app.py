"""`img2img app`: serve the web app (Gradio) on this machine, with limits for exposing it to others."""

from __future__ import annotations

import argparse
import ipaddress
import sys

from img2img.commands.common import RUNTIMES
from img2img.errors import ConfigError

HELP = "Start the web app: upscale and translate images in the browser (needs the [app] extra)."

_EPILOG = """examples:
  img2img app                                  # http://127.0.0.1:7860, this machine only
  img2img app --host 0.0.0.0 --port 8080 --max-pixels 2000000 --timeout 120
limits: uploads over --max-file-mb get HTTP 413; images over --max-pixels are refused from their header,
before decoding; one model runs at a time, --queue-size requests may wait, and a request that takes
longer than --timeout seconds is stopped."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from img2img.app import AppSettings  # light: flags and defaults live in one place

    d = AppSettings()
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = _EPILOG
    p.add_argument("--host", default=d.host, help=f"address to listen on (default {d.host}: this machine only)")
    p.add_argument("--port", type=int, default=d.port, help=f"port (default {d.port})")
    p.add_argument("--share", action="store_true", help="also open a temporary public link (off by default)")
    p.add_argument(
        "--max-pixels", type=int, default=d.max_pixels, help=f"largest input in pixels (default {d.max_pixels:,})"
    )
    p.add_argument(
        "--max-file-mb", type=float, default=d.max_file_mb, help=f"largest upload in MB (default {d.max_file_mb:g})"
    )
    p.add_argument(
        "--timeout", type=float, default=d.timeout, help=f"seconds of work per request (default {d.timeout:g})"
    )
    p.add_argument(
        "--queue-size",
        type=int,
        default=d.queue_size,
        help=f"requests that may wait for the model; more are refused (default {d.queue_size})",
    )
    p.add_argument(
        "--engine",
        default=d.engine,
        choices=RUNTIMES,
        help="runtime of the Upscale and Translate tabs (compile: torch.compile, compiled on first use; "
        "onnxruntime: fp32 on the CPU, exported on first use)",
    )


def _settings(args: argparse.Namespace):
    from img2img.app import AppSettings

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, not {args.port}")
    for flag, value in (
        ("--max-pixels", args.max_pixels),
        ("--max-file-mb", args.max_file_mb),
        ("--timeout", args.timeout),
        ("--queue-size", args.queue_size),
    ):
        if not value > 0:
            raise ConfigError(f"{flag} must be positive, not {value}")
    return AppSettings(
        host=args.host,
        port=args.port,
        share=args.share,
        max_pixels=args.max_pixels,
        max_file_mb=args.max_file_mb,
        timeout=args.timeout,
        queue_size=args.queue_size,
        engine=args.engine,
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    try:
        import gradio  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"the web app needs Gradio: pip install 'img2img[app]' ({e})") from e
    settings = _settings(args)
    from img2img.app import launch

    if not _is_loopback(settings.host) or settings.share:
        print(
            f"img2img: note: the app will be reachable from other machines ({settings.host}"
            f"{', plus a public share link' if settings.share else ''}); limits: "
            f"{settings.max_pixels:,} pixels, {settings.max_file_mb:g} MB, {settings.timeout:g} s per request",
            file=sys.stderr,
        )
    try:
        launch(settings)
    except OSError as e:
        raise ConfigError(f"cannot serve on {settings.host}:{settings.port} ({e}); try another --port") from e
    return 0
