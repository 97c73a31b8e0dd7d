"""How torch's OpenMP threads wait between parallel regions, decided before torch is imported
(libgomp reads OMP_WAIT_POLICY once, when it loads).

An embedding server's forward is one burst per step, and between bursts the same cores tokenize,
parse JSON and encode base64. By default the OpenMP workers spin after each region, and on a
shared or CPU-limited machine a worker that lost its core makes the others spin at the next
barrier. Measured on the 2-core machine under load (5 on 2 cores), a round of bench/embeddings.py
(bf16) took 1.14-1.45 s of the server's CPU with the default (1.8-2.0 s wall) and 0.56-0.57 s
waiting passively (0.9-0.96 s wall). So an
embedding model waits passively unless OMP_WAIT_POLICY is set. The LLM engine keeps libgomp's
default (its decode steps are many short regions back to back; not measured here).
"""

from __future__ import annotations

import argparse
import os
from typing import MutableMapping

from .task import EMBED, model_task


def prefer_passive_wait(argv: list[str], env: MutableMapping[str, str] = os.environ) -> bool:
    """Set OMP_WAIT_POLICY=PASSIVE for an embedding model when the user has not chosen; True if set."""
    if "OMP_WAIT_POLICY" in env:
        return False
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--model")
    model = parser.parse_known_args(argv)[0].model
    try:
        embed = bool(model) and model_task(model) == EMBED
    except (OSError, ValueError):  # a model that cannot be read fails later, with its own message
        return False
    if embed:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return embed
