"""YAML loading that remembers where every value came from (file and line).

Validation errors then name `file:line: field.path`, which is what a user needs
to fix a manifest without hunting for it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Hashable
from typing import Any

import yaml

from packager.errors import UserError

Path_ = tuple  # a field path: ("pools", 0, "accelerator")


@dataclass(frozen=True)
class YamlDoc:
    """Parsed YAML data plus the line (1-based) of every key and item."""

    data: Any
    file: str
    lines: dict[tuple, int] = field(default_factory=dict)

    def line_of(self, path: tuple) -> int | None:
        """Line of the deepest known prefix of `path` (a missing key points at its parent)."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (silently last-wins hides typos)."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):  # `{{}: 1}`: a mapping or list as a key
            raise yaml.constructor.ConstructorError(None, None, "a mapping key must be a plain value",
                                                    key_node.start_mark)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {seen[key]})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line + 1
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _index_lines(node: yaml.Node, path: tuple, lines: dict[tuple, int], file: str, ancestors: frozenset = frozenset()) -> None:
    if id(node) in ancestors:  # an alias inside its own anchor: the data would be infinite
        raise UserError("a YAML alias refers to its own anchor", file=file, line=node.start_mark.line + 1,
                        hint="remove the recursive anchor/alias")
    ancestors = ancestors | {id(node)}
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            child = path + (key,)
            lines[child] = key_node.start_mark.line + 1
            _index_lines(value_node, child, lines, file, ancestors)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, path + (i,), lines, file, ancestors)


MAX_ALIASES = 64  # manifests are small; many aliases means an alias bomb, not a manifest


def _check_aliases(text: str, file: str) -> None:
    count = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.AliasEvent):
            count += 1
            if count > MAX_ALIASES:
                raise UserError(f"more than {MAX_ALIASES} YAML aliases", file=file, line=event.start_mark.line + 1,
                                hint="write the values out instead of repeating anchors")


def parse_yaml(text: str, file: str) -> YamlDoc:
    """Parse `text`; YAML errors become a UserError naming the file and line."""
    try:
        _check_aliases(text, file)
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            lines: dict[tuple, int] = {}
            if node is not None:
                _index_lines(node, (), lines, file)  # first: it refuses recursive aliases
            data = loader.construct_document(node) if node is not None else None  # the same nodes, not a re-parse
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or str(exc)
        hint = ("remove or rename one of the two keys" if "duplicate key" in problem
                else "check indentation, quoting and that every key is followed by ': '")
        raise UserError(f"malformed YAML: {problem}", file=file, line=line, hint=hint) from None
    except yaml.YAMLError as exc:
        raise UserError(f"malformed YAML: {exc}", file=file, hint="fix the YAML syntax") from None
    except RecursionError:
        raise UserError("an alias refers to itself (or nests too deeply)", file=file,
                        hint="remove the recursive anchor/alias") from None
    return YamlDoc(data=data, file=file, lines=lines)


def read_yaml(path: str | Path) -> YamlDoc:
    """Read and parse a YAML file; a missing or unreadable file is a UserError."""
    p = Path(path)
    if not p.exists():
        raise UserError("file not found", file=str(path), hint="check the path, or pass a catalog shorthand such as `cpu` or `nvidia-l4:1`")
    if p.is_dir():
        raise UserError("is a directory, expected a YAML file", file=str(path), hint="pass the manifest file itself")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read: {exc}", file=str(path), hint="pass a readable UTF-8 YAML file") from None
    return parse_yaml(text, str(path))
