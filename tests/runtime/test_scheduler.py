"""Scheduler and KV-block bookkeeping (paging, prefix caching), without torch or a model."""

import pytest
from hypothesis import given, settings, strategies as st

from runtimes.fallback.block_manager import BlockManager
from runtimes.fallback.scheduler import Scheduler as _Scheduler
from runtimes.fallback.sequence import Sequence, Status


def Scheduler(max_num_seqs, max_model_len, prefill_chunk, num_blocks=None, block_size=4, caching=False):
    num_blocks = num_blocks or max_num_seqs * -(-max_model_len // block_size)
    return _Scheduler(max_num_seqs, max_model_len, prefill_chunk, BlockManager(num_blocks, block_size, caching))


def seq(rid, n, max_tokens=4):
    return Sequence(rid, list(range(1, n + 1)), max_tokens)


def run_step(s: Scheduler, token=7):
    """What the engine does around the model: advance, then append a sampled
    token for every sequence whose prompt is complete."""
    step = s.schedule()
    s.advance(step)
    sampled = list(step.decode) + [c.seq for c in step.prefill if c.completes_prompt]
    for q in sampled:
        q.output_ids.append(token)
    return step


def test_block_manager_reserves_shares_and_evicts_least_recently_freed():
    m = BlockManager(num_blocks=6, block_size=4)
    a = [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert m.admit("a", a, 12) == 0 and m.num_free == 3  # 3 blocks reserved
    assert m.ensure("a", 9) == [0, 1, 2], "a lone sequence gets consecutive blocks"
    m.register("a", a, 9)
    assert m.match_prefix(a + [10]) == [0, 1]
    assert m.admit("b", a[:8] + [42], 9) == 8, "two full blocks shared, the last token recomputed"
    assert m.table("b") == [0, 1] and m.num_free == 2
    assert m.admit("c", [7] * 12, 12) is None, "3 blocks wanted, 2 free: nothing changes"
    m.free("a")
    m.free("b")
    assert m.usage() == 0 and m.num_free == 6
    # Unhashed blocks are reused first, then cached ones, tail before head.
    assert m.admit("c", [7] * 20, 20) == 0
    assert m.ensure("c", 20) == [2, 3, 4, 5, 1]
    assert m.match_prefix(a) == [0], "block 1 was evicted, block 0 kept"
    assert m.queries == 9 + 9 + 20 and m.hits == 8


def test_tables_stay_consecutive_where_the_next_block_is_free_and_fresh_blocks_are_reported():
    m = BlockManager(num_blocks=5, block_size=4, enable_prefix_caching=False)
    for sid in "abcd":
        m.admit(sid, [1, 2], 4)
        m.ensure(sid, 2)
    assert m.pop_fresh() == [0, 1, 2, 3] and m.pop_fresh() == []
    for sid in "bad":
        m.free(sid)  # least recently freed first: 3, 0, 1, 4
    m.admit("e", [5] * 12, 12)
    # Least recently freed 3, then 4 (after 3, free) rather than 0, then 0.
    assert m.ensure("e", 12) == [3, 4, 0]
    assert m.pop_fresh() == [3, 4, 0], "every block handed out is reported, to be zeroed"


def test_without_caching_nothing_is_shared():
    m = BlockManager(num_blocks=4, block_size=4, enable_prefix_caching=False)
    m.admit("a", [1] * 9, 9)
    m.ensure("a", 9)
    m.register("a", [1] * 9, 9)
    m.free("a")
    assert m.admit("b", [1] * 9, 9) == 0 and m.hits == 0


def test_newcomers_join_between_steps_and_running_keep_decoding():
    s = Scheduler(max_num_seqs=4, max_model_len=64, prefill_chunk=8)
    a = seq("a", 5)
    s.add(a)
    st1 = run_step(s)
    assert [c.seq for c in st1.prefill] == [a] and a.status is Status.DECODING
    b = seq("b", 20)  # needs 3 chunks of 8
    s.add(b)
    for expected_start in (0, 8, 16):
        step = run_step(s)
        assert step.decode == [a], "a running request advances every step"
        assert [(c.seq, c.start) for c in step.prefill] == [(b, expected_start)]
    step = run_step(s)
    assert set(step.decode) == {a, b} and not step.prefill


def test_prefill_budget_bounds_a_step_and_chunks_are_never_split():
    s = Scheduler(max_num_seqs=8, max_model_len=128, prefill_chunk=10)
    for i, n in enumerate([6, 6, 3]):
        s.add(seq(str(i), n))
    step = s.schedule()
    # 6 fits, the next 6 would exceed the 10-token budget: it waits whole.
    assert [c.length for c in step.prefill] == [6]
    assert s.num_waiting == 2
    s.advance(step)
    assert [c.length for c in s.schedule().prefill] == [6, 3]


def test_chunk_boundaries_do_not_depend_on_load():
    def starts(extra_load):
        s = Scheduler(max_num_seqs=8, max_model_len=256, prefill_chunk=16)
        for i in range(extra_load):
            s.add(seq(f"x{i}", 5))
        target = seq("t", 40)
        s.add(target)
        seen = []
        while target.status is not Status.DECODING:
            for c in run_step(s).prefill:
                if c.seq is target:
                    seen.append((c.start, c.length))
        return seen

    assert starts(0) == starts(3) == starts(7) == [(0, 16), (16, 16), (32, 8)]


def test_slots_bound_the_running_set_and_finish_frees():
    s = Scheduler(max_num_seqs=2, max_model_len=64, prefill_chunk=64)
    seqs = [seq(str(i), 3) for i in range(4)]
    for q in seqs:
        s.add(q)
    run_step(s)
    assert s.num_running == 2 and s.num_waiting == 2
    s.finish(seqs[0], "stop")
    assert seqs[0].block_table is None and seqs[0].finish_reason == "stop"
    step = run_step(s)
    assert [c.seq for c in step.prefill] == [seqs[2]] and seqs[2].block_table


def test_abort_waiting_and_running():
    s = Scheduler(max_num_seqs=1, max_model_len=64, prefill_chunk=64)
    a, b = seq("a", 3), seq("b", 3)
    s.add(a)
    s.add(b)
    run_step(s)
    assert s.abort("b") is b and b.finish_reason == "abort" and s.num_waiting == 0
    assert s.abort("a") is a and s.blocks.usage() == 0 and not s.has_work()
    assert s.abort("a") is None


def test_rejects_prompts_that_fill_the_context_and_duplicates():
    s = Scheduler(max_num_seqs=1, max_model_len=8, prefill_chunk=8)
    with pytest.raises(ValueError):
        s.add(seq("long", 8))
    s.add(seq("ok", 7))
    with pytest.raises(ValueError):
        s.add(seq("ok", 2))


@settings(max_examples=80, deadline=None)
@given(
    prompts=st.lists(st.integers(1, 40), min_size=1, max_size=12),
    slots=st.integers(1, 4),
    chunk=st.integers(1, 16),
    gen=st.integers(1, 5),
    num_blocks=st.integers(12, 40),
    caching=st.booleans(),
)
def test_everything_finishes_and_invariants_hold(prompts, slots, chunk, gen, num_blocks, caching):
    # Every prompt is 1..n: they share prefixes, so caching is exercised.
    s = Scheduler(max_num_seqs=slots, max_model_len=64, prefill_chunk=chunk, num_blocks=num_blocks, caching=caching)
    seqs = [seq(str(i), n, gen) for i, n in enumerate(prompts)]
    for q in seqs:
        s.add(q)
    for _ in range(10_000):
        if not s.has_work():
            break
        step = s.schedule()
        assert not step.empty, "work remains but nothing was scheduled"
        assert sum(c.length for c in step.prefill) <= chunk
        assert len(s.running) <= slots
        owned = [b for q in s.running for b in q.block_table]
        refs = {b: owned.count(b) for b in owned}
        assert all(s.blocks.blocks[b].ref_count == n for b, n in refs.items())
        # A block is shared only when it holds a cached (hashed) prefix.
        assert all(n == 1 or s.blocks.blocks[b].hash is not None for b, n in refs.items())
        assert s.blocks.num_free >= 0
        s.advance(step)
        for q in list(step.decode) + [c.seq for c in step.prefill if c.completes_prompt]:
            q.output_ids.append(1)
            assert q.num_computed == q.total_len - 1
            if len(q.output_ids) >= q.max_tokens:
                s.finish(q, "length")
    assert all(q.finished and len(q.output_ids) == gen for q in seqs)
    assert s.blocks.usage() == 0 and s.blocks.num_free == num_blocks
