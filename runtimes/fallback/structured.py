"""Where a request asks for structured output: OpenAI's ``response_format``
(json_object, json_schema), vLLM's ``structured_outputs`` and its older
``guided_json``/``guided_regex``/``guided_choice``/``guided_grammar``, read
into one ``guided.Spec`` (at most one per request)."""

from __future__ import annotations

import json
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .guided import Spec


class ConstraintError(ValueError):
    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict | None = None

    @model_validator(mode="after")
    def _schema(self):
        if self.type == "json_schema":
            js = self.json_schema or {}
            schema = js.get("schema", {"type": "object"}) if isinstance(js, dict) else None
            if not isinstance(schema, (dict, bool)):
                raise ValueError("json_schema.schema must be a JSON schema object")
        return self


class StructuredOutputs(BaseModel):
    """vLLM's ``structured_outputs`` (and the older top-level ``guided_*`` fields)."""

    model_config = ConfigDict(extra="forbid")
    json_: Union[dict, str, None] = Field(None, alias="json")
    regex: str | None = None
    choice: list[str] | None = Field(None, min_length=1, max_length=256)
    grammar: str | None = None
    json_object: bool | None = None


def constraint_of(req: Any) -> Spec | None:
    so = req.structured_outputs
    found = [
        ("guided_json", Spec("json", _schema_value(req.guided_json)) if req.guided_json is not None else None),
        ("guided_regex", Spec("regex", req.guided_regex) if req.guided_regex is not None else None),
        ("guided_choice", Spec("choice", req.guided_choice) if req.guided_choice else None),
        ("guided_grammar", Spec("grammar", req.guided_grammar) if req.guided_grammar is not None else None),
        ("structured_outputs", _structured(so) if so is not None else None),
        ("response_format", _format_spec(req.response_format)),
    ]
    found = [(name, spec) for name, spec in found if spec is not None]
    if len(found) > 1:
        raise ConstraintError(f"{found[0][0]} and {found[1][0]}: give one output constraint, not several", found[1][0])
    return found[0][1] if found else None


def _schema_value(v: Any) -> Any:
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except ValueError:
            raise ConstraintError("guided_json: not valid JSON", "guided_json") from None
    if not isinstance(v, (dict, bool)):
        raise ConstraintError("guided_json: must be a JSON schema object", "guided_json")
    return v


def _structured(so: StructuredOutputs) -> Spec | None:
    if so.json_ is not None:
        return Spec("json", _schema_value(so.json_))
    if so.regex is not None:
        return Spec("regex", so.regex)
    if so.choice:
        return Spec("choice", so.choice)
    if so.grammar is not None:
        return Spec("grammar", so.grammar)
    return Spec("json_object") if so.json_object else None


def _format_spec(rf: ResponseFormat | None) -> Spec | None:
    if rf is None or rf.type == "text":
        return None
    if rf.type == "json_object":
        return Spec("json_object")
    js = rf.json_schema or {}
    return Spec("json", js.get("schema", {"type": "object"}))
