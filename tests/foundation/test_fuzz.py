"""Random manifests and shorthands never produce a traceback: exit 0, 1 (nothing fits) or 2 (bad input)."""
from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = ROOT / "manifests" / "models" / "smollm2-135m-instruct.yaml"
GOOD = yaml.safe_load(DEFAULT_MODEL.read_text())

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["bf16", "fp8", "cpu", "llama", "nvidia-l4", "gguf"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=8)
KEYS = ["name", "source", "architecture", "serving", "layers", "kv_heads", "context_length", "precisions",
        "pools", "accelerator", "count", "nodes", "memory_gib", "path", "repo", "revision", "file", "package"]


def mutate(base, path_keys, value):
    """Set a (possibly new) nested key in a copy of a valid manifest: near-valid inputs reach deeper code."""
    doc = yaml.safe_load(yaml.safe_dump(base))
    cur = doc
    for k in path_keys[:-1]:
        if not isinstance(cur, dict):
            return doc
        cur = cur.setdefault(k, {})
    if isinstance(cur, dict):
        cur[path_keys[-1]] = value
    return doc


def run(run_cli, *args):
    code, out, err = run_cli(*args)
    assert "Traceback" not in err and "Traceback" not in out
    assert code in (0, 1, 2), (code, err)
    if code == 2:
        assert err.startswith("error:") or "Usage" in err or "Error" in err, err
    return code


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=st.lists(st.sampled_from(KEYS), min_size=1, max_size=3), value=values)
def test_random_model_manifests(run_cli, tmp_path, keys, value):
    p = tmp_path / "model.yaml"
    p.write_text(yaml.safe_dump(mutate(GOOD, keys, value)))
    run(run_cli, "validate", str(p))
    run(run_cli, "profiles", str(p), "--hardware", "nvidia-l4:1", "--json")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=80))
def test_random_yaml_text(run_cli, tmp_path, text):
    p = tmp_path / "any.yaml"
    p.write_text(text)
    run(run_cli, "validate", str(p))
    run(run_cli, "profiles", str(DEFAULT_MODEL), "--hardware", str(p))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.one_of(st.sampled_from(["cpu", "nvidia-l4", "nvidia-h100-sxm-80gb", "amd-mi300x", "nvidia-t4"]),
                     st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-:x./", max_size=20)),
       count=st.one_of(st.none(), st.integers(-2, 100)), nodes=st.one_of(st.none(), st.integers(-2, 2000)))
def test_random_shorthands(run_cli, key, count, nodes):
    arg = key
    if count is not None:
        arg += f":{count}" + (f"x{nodes}" if nodes is not None else "")
    run(run_cli, "profiles", str(DEFAULT_MODEL), "--hardware", arg)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pool=st.dictionaries(st.sampled_from(["name", "accelerator", "count", "nodes", "memory_gib", "cloud",
                                             "kubernetes", "cpu_cores", "extra"]), values, max_size=5))
def test_random_hardware_manifests(run_cli, tmp_path, pool):
    p = tmp_path / "hw.yaml"
    p.write_text(yaml.safe_dump({"name": "hw", "pools": [{"accelerator": "nvidia-l4", **pool}]}))
    run(run_cli, "profiles", str(DEFAULT_MODEL), "--hardware", str(p))
