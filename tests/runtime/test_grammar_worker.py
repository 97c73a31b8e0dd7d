"""Grammar compiles are bounded (issue 20, item 6b): caps on the counts that make a JSON
schema's grammar grow, and a deadline kept by compiling in a worker process, whose child is
killed past it. Real xgrammar, the real SmolLM2 vocabulary."""

from __future__ import annotations

import time

import pytest

from runtimes.fallback.grammar_worker import CompileSandbox, GrammarTimeout
from runtimes.fallback.guided import CAPS, GrammarError, Guide, Spec, check_caps

SLOW_REGEX = '[^"]{1,2000}'  # no count caps it; compiles for seconds here


def wide(n: int) -> dict:
    return {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(n)}}


@pytest.mark.parametrize("schema,where,n,cap", [
    (wide(2000), "$.properties", 2000, CAPS["properties"]),  # 57k characters: under the size cap; > 20 s to compile
    ({"type": "array", "items": {"anyOf": [wide(1), wide(300)]}}, "$.items.anyOf[1].properties", 300, 256),
    ({"enum": list(range(1025))}, "$.enum", 1025, CAPS["enum"]),
    ({"oneOf": [{"const": i} for i in range(257)]}, "$.oneOf", 257, CAPS["oneOf"]),
    ({"$defs": {"x": {"allOf": [{}] * 300}}}, "$.$defs.x.allOf", 300, CAPS["allOf"]),
])
def test_caps_name_where_how_many_and_the_cap(schema, where, n, cap):
    with pytest.raises(GrammarError) as e:
        check_caps(Spec("json", schema))
    assert str(e.value) == f"{where} has {n} entries; the cap is {cap}"


def test_at_the_caps_a_schema_passes():
    check_caps(Spec("json", {**wide(256), "anyOf": [{"enum": list(range(1024))}] + [{}] * 255}))
    check_caps(Spec("regex", SLOW_REGEX))  # what no count catches, the deadline does


@pytest.fixture(scope="module")
def sandbox(smol_tokenizer):
    guide = Guide(smol_tokenizer, 49152, (smol_tokenizer.eos_token_id,))
    sb = CompileSandbox(guide.tokenizer_info(), timeout=1.0)
    sb.check(Spec("choice", ["warm"]))  # the worker's imports (seconds) are not the deadline's business
    yield sb
    sb.close()


def test_a_grammar_that_compiles_in_time_passes_and_a_bad_one_says_why(sandbox):
    sandbox.check(Spec("json", wide(20)))
    with pytest.raises(GrammarError, match="invalid regex: missing \\)"):
        sandbox.check(Spec("regex", "a("))
    with pytest.raises(GrammarError, match='Rule "x" is not defined'):
        sandbox.check(Spec("grammar", "root ::= x"))


def test_past_the_deadline_the_compile_is_killed_and_the_worker_goes_on(sandbox):
    t0 = time.monotonic()
    with pytest.raises(GrammarTimeout) as e:
        sandbox.check(Spec("regex", SLOW_REGEX))
    assert time.monotonic() - t0 < 3.0
    assert "took over 1 s (--grammar-compile-timeout)" in str(e.value)
    pid = sandbox.proc.pid
    sandbox.check(Spec("choice", ["yes", "no"]))
    assert sandbox.proc.pid == pid  # the same worker: only its child was killed


def test_a_dead_worker_fails_one_check_and_is_replaced(sandbox):
    sandbox.proc.kill()
    sandbox.proc.wait()
    with pytest.raises(GrammarError, match="retry"):
        sandbox.check(Spec("choice", ["a"]))
    sandbox.check(Spec("choice", ["a"]))
