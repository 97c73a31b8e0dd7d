"""Turn pydantic validation errors into one UserError naming file, line, field path and fix."""
from __future__ import annotations

import difflib

from pydantic import BaseModel, ValidationError

from packager.errors import UserError
from packager.yamlsource import YamlDoc


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the sub-model that `loc` (ending in the bad key) lives in."""
    current: type[BaseModel] | None = model
    for part in loc[:-1]:
        if current is None or isinstance(part, int):
            continue
        info = current.model_fields.get(part)
        if info is None:
            return []
        current = _model_in(info.annotation)
    return list(current.model_fields) if current else []


def _model_in(annotation) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found:
            return found
    return None


def _pick(errors: list[dict]) -> dict:
    # A dict given for `str | Spec` yields a useless "should be a string" error too; prefer the others.
    useful = [e for e in errors if e["type"] not in ("string_type",)] or errors
    return useful[0]


def user_error_from(exc: ValidationError, doc: YamlDoc, model: type[BaseModel]) -> UserError:
    errors = exc.errors(include_url=False)
    err = _pick(errors)
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p[:1].isupper()))  # drop union tags
    field = _dotted(loc)
    line = doc.line_of(loc)
    kind = err["type"]
    more = f" ({len(errors) - 1} more problem(s) after this one)" if len(errors) > 1 else ""
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, loc)
        guess = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        msg = f"unknown key {loc[-1]!r}" + (f"; did you mean {guess[0]!r}?" if guess else "")
        hint = f"allowed keys here: {', '.join(allowed)}" if allowed else "remove the key"
    elif kind == "missing":
        msg = "required field is missing"
        hint = f"add `{loc[-1]}:` here (see `packager schema`)"
    elif kind == "literal_error":
        msg = f"{err['input']!r} is not allowed"
        hint = f"use one of: {err['ctx']['expected']}"
    elif kind in ("greater_than", "greater_than_equal", "less_than_equal", "less_than"):
        msg = f"{err['input']!r}: {err['msg'].lower()}"
        hint = "give a positive value in range"
    elif kind.endswith("_type") or kind.endswith("_parsing"):
        msg = f"{err['input']!r}: {err['msg'].lower()}"
        hint = "fix the value's type"
    elif kind == "value_error":
        msg = err["msg"].removeprefix("Value error, ")
        hint = "see the message above"
    else:
        msg = err["msg"]
        hint = "see `packager schema` for what is allowed here"
    return UserError(msg + more, file=doc.file, line=line, field=field, hint=hint)


def validate(doc: YamlDoc, model: type[BaseModel], what: str):
    if not isinstance(doc.data, dict):
        raise UserError(f"expected a YAML mapping (a {what} manifest), got {type(doc.data).__name__}",
                        file=doc.file, line=1, hint=f"start from an example in manifests/ or `packager schema {what}`")
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        raise user_error_from(exc, doc, model) from None
