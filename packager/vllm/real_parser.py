"""vLLM's real `serve` parser, for the contract's --real check: importable only inside a venv
with the pinned vllm (serve_argv.VLLM_VERSION) installed (packager itself never imports vllm)."""

from __future__ import annotations

import argparse
from typing import Iterable

from packager.vllm.contract import load_snapshot
from packager.vllm.serve_argv import VLLM_VERSION


def _real_parser():
    # Imported here so that packager never imports vllm at import time.
    from vllm.entrypoints.cli.serve import ServeSubcommand
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    top = FlexibleArgumentParser(prog="vllm")
    subparsers = top.add_subparsers(required=False, dest="subparser")
    cmd = ServeSubcommand()
    cmd.subparser_init(subparsers)
    return top, cmd


def real_check(argvs: Iterable[list[str]]) -> list[list[str]]:
    """Problems per argv from vLLM's real parser + validate_parsed_serve_args."""
    import contextlib
    import importlib.metadata
    import io

    installed = importlib.metadata.version("vllm")
    if installed != VLLM_VERSION:
        raise RuntimeError(f"vllm {installed} is installed; the contract is for {VLLM_VERSION}")
    top, cmd = _real_parser()
    results: list[list[str]] = []
    for argv in argvs:
        if list(argv[:2]) != ["vllm", "serve"]:
            results.append([f"argv must start with ['vllm', 'serve'], got {list(argv[:2])}"])
            continue
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                ns = top.parse_args(list(argv[1:]))
                cmd.validate(ns)
            if getattr(ns, "model_tag", None) is None:
                results.append(["no model: vllm serve needs the model as its first positional argument"])
            else:
                results.append([])
        except SystemExit as e:  # argparse errors exit(2) after printing usage
            lines = [ln for ln in err.getvalue().splitlines() if "error:" in ln]
            results.append(lines or [f"parser exited with {e.code}"])
        except (ValueError, TypeError) as e:
            results.append([f"{type(e).__name__}: {e}"])
    return results


def snapshot_drift() -> list[str]:
    """Differences between the stored snapshot and the installed vLLM's parser."""
    top, _cmd = _real_parser()
    serve = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction)).choices["serve"]
    live = set(serve._option_string_actions)
    stored = set(load_snapshot().by_string)
    out = [f"flag in vLLM but not in the snapshot: {s}" for s in sorted(live - stored)]
    out += [f"flag in the snapshot but not in vLLM: {s}" for s in sorted(stored - live)]
    return out
