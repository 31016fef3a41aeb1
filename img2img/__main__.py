"""`python -m img2img ...` (and `torchrun ... -m img2img ...`) runs the CLI."""

import sys

from img2img.cli import main

sys.exit(main())
