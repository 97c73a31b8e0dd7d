"""Render a Dockerfile from templates/ with a sandboxed, strict Jinja2 environment."""
from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from packager.families import Family
from packager.image.context import ImageContext
from packager.errors import UserError


def templates_dir() -> Path:
    """templates/ (packager/image/templates in the package and the wheel), or $PACKAGER_TEMPLATES."""
    env = os.environ.get("PACKAGER_TEMPLATES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent / "templates"


def _environment(root: Path) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        loader=FileSystemLoader(str(root)),
        undefined=StrictUndefined,
        autoescape=False,  # Dockerfiles, not HTML: quoting is explicit through the filters
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # shquote: for shell words in RUN; json: for exec-form arrays and LABEL/ENV values.
    env.filters["shquote"] = lambda v: shlex.quote(str(v))
    env.filters["json"] = lambda v: json.dumps(list(v) if isinstance(v, tuple) else v)
    return env


def render_dockerfile(ctx: ImageContext, root: Path | None = None) -> str:
    root = root or templates_dir()
    try:
        return _environment(root).get_template(ctx.template).render(ctx=ctx)
    except TemplateError as exc:
        raise UserError(f"rendering {ctx.template}: {exc}", file=str(root / ctx.template)) from exc


# The base made by .ci/docker.sh (debootstrap bookworm minbase + python3): no
# registry can be reached, so the default base is a local image.
LOCAL_BASE = "packager-base:bookworm"


def default_base_image(family: Family, vendor: str | None) -> str:
    """The FROM line's image when --base-image is not given."""
    if family.name == "vllm":
        from packager.vllm import vllm_image

        return vllm_image(vendor or "nvidia").ref
    return LOCAL_BASE
