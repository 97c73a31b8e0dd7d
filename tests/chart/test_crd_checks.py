"""The CRD checker itself: what it evaluates, what it lists instead of passing, and that it applies defaults
and refuses unknown fields as an API server does."""
from __future__ import annotations

import pytest
from chart_checks import shared_dir

import crd_checks


def rules(schema, value):
    out, failures = crd_checks.Checked("Test"), []
    crd_checks._rules(schema, value, "", out, failures)
    return out, failures


def test_rules_cel_python_cannot_run_are_listed_never_passed():
    schema = {"type": "object", "properties": {"url": {"type": "string", "x-kubernetes-validations": [
        {"rule": "isURL(self)", "message": "must be a URL"},  # a Kubernetes CEL library function
        {"rule": "self.size() > 3", "message": "too short"}]}}}
    out, failures = rules(schema, {"url": "https://example.com"})
    assert failures == []
    assert out.evaluated == ["url: self.size() > 3"]
    assert len(out.unevaluated) == 1 and "isURL" in out.unevaluated[0] and "cannot evaluate" in out.unevaluated[0]


def test_transition_rules_are_listed_as_update_only():
    schema = {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "immutable"}]}
    out, failures = rules(schema, "a")
    assert failures == [] and out.evaluated == [] and "update only" in out.unevaluated[0]


def test_false_rules_and_missing_fields_fail():
    schema = {"type": "object", "x-kubernetes-validations": [{"rule": "self.a > 1", "message": "a must exceed 1"}],
              "properties": {"a": {"type": "integer"}}}
    assert rules(schema, {"a": 0})[1] == ["(root): self.a > 1: a must exceed 1"]
    assert "no such" in rules(schema, {})[1][0]  # the API server fails a rule on an absent field too


def test_every_rule_of_every_crd_compiles():
    """All the CRDs' rules parse in cel-python, so evaluating one is never skipped for a parse error."""
    import yaml

    count = 0
    for path in sorted((shared_dir() / "crds").glob("*.yaml")):
        stack = [yaml.safe_load(path.read_text())]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                for v in node.get("x-kubernetes-validations") or []:
                    crd_checks._program(v["rule"])
                    count += 1
                stack += list(node.values())
            elif isinstance(node, list):
                stack += node
    assert count >= 500, count


def test_defaults_apply_before_validation():
    pool = {"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool", "metadata": {"name": "p"},
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "targetPorts": [{"number": 8000}],
                     "endpointPickerRef": {"name": "epp"}}}  # kind defaults to Service, which needs a port
    with pytest.raises(AssertionError, match="port is required"):
        crd_checks.check(pool, shared_dir() / "crds")
    pool["spec"]["endpointPickerRef"]["port"] = {"number": 9002}
    assert crd_checks.check(pool, shared_dir() / "crds").evaluated
