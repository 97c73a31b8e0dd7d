"""values.yaml as a person reads it: the chart's own order and comments, with the plan's values in place.

PyYAML drops comments, so the file is written block by block from a commented source (the chart's
values.yaml): a block whose value is unchanged is copied with all its comments; a changed one keeps
the comments above it and its children's, with the new value dumped in place. Keys the source lacks
come last. `packager chart` writes it from helm/values.yaml; `publish` rewrites a chart's own.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w.-]*):(?:\s|$)")


@dataclass
class Block:
    key: str
    comments: list[str] = field(default_factory=list)  # comment and blank lines just above the key
    lines: list[str] = field(default_factory=list)  # the key's own text, children included


def split_blocks(lines: list[str], indent: int) -> tuple[list[str], list[Block], list[str]]:
    """(lines before the first key's comments, the keys at `indent` with their text, lines after the last)."""
    head: list[str] = []
    blocks: list[Block] = []
    pending: list[str] = []
    for line in lines:
        m = _KEY.match(line)
        stripped = line.strip()
        if m and len(m["indent"]) == indent:
            blocks.append(Block(m["key"], pending, [line]))
            pending = []
        elif not stripped or (stripped.startswith("#") and len(line) - len(line.lstrip()) <= indent):
            pending.append(line)  # a comment at this level belongs to the next key
        elif blocks:
            blocks[-1].lines += pending + [line]
            pending = []
        else:
            head += pending + [line]
            pending = []
    if not blocks:
        return head + pending, [], []
    return head, blocks, pending


def _dump(key: str, value: Any, indent: int) -> list[str]:
    text = yaml.safe_dump({key: value}, sort_keys=False, width=120, default_flow_style=False)
    if isinstance(value, (dict, list)) and not value:
        text = f"{key}: {'{}' if isinstance(value, dict) else '[]'}\n"
    return [" " * indent + line for line in text.splitlines()]


def _render(source: list[str], values: dict[str, Any], old: dict[str, Any], indent: int) -> list[str]:
    _, blocks, tail = split_blocks(source, indent)
    out: list[str] = []
    seen = set()
    for b in blocks:
        if b.key not in values:
            continue
        seen.add(b.key)
        out += b.comments
        new, was = values[b.key], old.get(b.key) if isinstance(old, dict) else None
        if new == was:
            out += b.lines
        elif isinstance(new, dict) and new and isinstance(was, dict) and len(b.lines) > 1:
            out.append(b.lines[0].rstrip())  # `key:`; children one level in, their comments kept
            out += _render(b.lines[1:], new, was, indent + 2)
        else:
            out += _dump(b.key, new, indent)
    for key, value in values.items():
        if key not in seen:
            out += _dump(key, value, indent)
    return out + (tail if indent == 0 else [])


def render_values(values: dict[str, Any], source_text: str, header: str | None = None) -> str:
    """`values` written in `source_text`'s order with its comments; `header` replaces its leading comment."""
    lines = source_text.splitlines()
    n = 0  # the leading comment paragraph is the file's header, not the first key's comment
    while n < len(lines) and lines[n].startswith("#"):
        n += 1
    head, lines = lines[:n], lines[n:]
    old = yaml.safe_load(source_text) or {}
    body = _render(lines, values, old, 0)
    top = header.rstrip("\n").splitlines() if header is not None else head
    text = "\n".join(top + body).rstrip("\n") + "\n"
    assert yaml.safe_load(text) == values, "values.yaml must say exactly the values"  # a layout bug, never input
    return text
