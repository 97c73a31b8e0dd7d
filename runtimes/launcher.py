"""The image's entrypoint (`python -m runtimes.launcher`, the images' ENTRYPOINT): forwards to
the runtimes.launch package, where each step has its own module."""
from __future__ import annotations

import sys

from runtimes.launch.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
