"""The hardware to plan for when no --hardware is given: PACKAGER_HARDWARE=KEY[:COUNT[xNODES]] (the
--hardware shorthand) stands in for detection, e.g. to rehearse a GPU profile on a laptop; else what
packager.detect measures. Applied here, where hardware is loaded, so detect/ only measures.
"""
from __future__ import annotations

import os
from dataclasses import replace
from typing import Mapping

from packager.detect import Sources, detect_hardware
from packager.detect.describe import STAND_IN
from packager.errors import UserError
from packager.facts import Hardware


def stand_in(value: str) -> Hardware:
    """PACKAGER_HARDWARE's hardware, through the --hardware parser; a bad value names the variable."""
    from packager.manifests import load_hardware  # pydantic only when the variable is set

    try:
        hw = load_hardware(value.strip())
    except UserError as exc:
        raise UserError(f"{value!r}: {exc.message}", field=STAND_IN,
                        hint=(exc.hint + "; " if exc.hint else "")
                        + f"or unset {STAND_IN} to detect this machine's hardware") from None
    return replace(hw, name=f"{STAND_IN}={value.strip()}")


def this_machine(environ: Mapping[str, str] | None = None, sources: Sources | None = None) -> Hardware:
    """PACKAGER_HARDWARE's stand-in when it is set (the process environment by default), else detected."""
    override = ((os.environ if environ is None else environ).get(STAND_IN) or "").strip()
    if override:
        return stand_in(override)
    return detect_hardware(sources)
