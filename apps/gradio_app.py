"""Start the img2img web app: `python apps/gradio_app.py [--host 127.0.0.1] [--port 7860] ...`
(the same as `img2img app`; see `img2img app --help` for the limits it takes)."""

import sys

from img2img.cli import main

if __name__ == "__main__":
    sys.exit(main(["app", *sys.argv[1:]]))
