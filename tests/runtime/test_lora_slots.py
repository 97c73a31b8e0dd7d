"""The LoRA delta's two paths (segmented gather-matmul and dense masked) against a per-row
reference, the manager's tiers (registered / loaded LRU / active slots), and adapters read
from PEFT files with tiny shapes: no model needed."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from runtimes.fallback.lora.adapter import AdapterError, Shapes
from runtimes.fallback.lora.manager import LoraConfig, LoraManager
from runtimes.fallback.lora.slots import FUSED, LoraBatch, onehot_for, segments_for
from tests.lora_adapters import write_adapter

TINY = SimpleNamespace(hidden_size=64, intermediate_size=96, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16)


@pytest.fixture
def manager(tmp_path):
    m = LoraManager(Shapes.of(TINY), LoraConfig(max_loras=3, max_lora_rank=8, max_cpu_loras=3))
    for k, (rank, targets) in enumerate([(8, ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")),
                                         (4, ("q_proj", "v_proj")), (2, ("down_proj",))]):
        write_adapter(tmp_path / f"a{k}", TINY, k + 1, rank=rank, alpha=3 * rank, targets=targets, std=0.3)
        m.register(f"a{k}", tmp_path / f"a{k}")
    return m


def reference(adapter, layer, group, x):
    """Per row, per sub-module: scale * (x A^T) B^T from the adapter's own tensors (B holds the scale)."""
    outs = []
    for sub in FUSED[group]:
        w = adapter.weights.get((layer, sub))
        d_out = Shapes.of(TINY).dims[sub][1]
        outs.append(torch.zeros(x.shape[0], d_out) if w is None else (x @ w[0].t()) @ w[1].t())
    return torch.cat(outs, dim=1)


def test_both_paths_match_the_per_row_reference(manager):
    ads = [manager.acquire(f"a{k}") for k in range(3)]
    slot_of = manager.activate(ads)
    row_ads = [ads[0], None, ads[1], ads[2], ads[0], None, ads[1]]  # rows interleaved, two of the base
    rows = [-1 if a is None else slot_of[a.uid] for a in row_ads]
    w = manager.slots
    dense = LoraBatch(w, (), onehot_for(rows, w.num_slots, torch.float32))
    seg = LoraBatch(w, segments_for(rows, None))
    torch.manual_seed(0)
    for layer in range(TINY.num_layers):
        for group, subs in FUSED.items():
            d_in = Shapes.of(TINY).dims[subs[0]][0]
            d_out = sum(Shapes.of(TINY).dims[s][1] for s in subs)
            x, y = torch.randn(len(rows), d_in), torch.randn(len(rows), d_out)
            want = y.clone()
            for r, a in enumerate(row_ads):
                if a is not None:
                    want[r] += reference(a, layer, group, x[r:r + 1])[0]
            for path in (dense, seg):
                got = path.apply(layer, group, x, y.clone())
                torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
                base_rows = [r for r, a in enumerate(row_ads) if a is None]
                assert torch.equal(got[base_rows], y[base_rows])  # base rows untouched, bit for bit
            assert not torch.allclose(want, y)  # the adapters do something


def test_slots_are_reused_least_recently_used_first(manager):
    a0, a1, a2 = (manager.acquire(f"a{k}") for k in range(3))
    assert manager.activate([a0, a1]) == {a0.uid: 0, a1.uid: 1}
    assert manager.activate([a2]) == {a2.uid: 2}
    assert manager.activate([a0, a2]) == {a0.uid: 0, a2.uid: 2}  # already in their slots: nothing copied
    a3 = manager.register("a3", manager.path("a0"))  # same files, another load: another adapter
    assert manager.activate([a0, a2, a3]) == {a0.uid: 0, a2.uid: 2, a3.uid: 1}  # slot 1 (a1) was least recent
    with pytest.raises(RuntimeError, match="max-loras"):
        manager.activate([a0, a1, a2, a3])


def test_the_cpu_lru_evicts_and_reads_again(tmp_path):
    m = LoraManager(Shapes.of(TINY), LoraConfig(max_loras=1, max_lora_rank=8, max_cpu_loras=2))
    for k in range(3):
        write_adapter(tmp_path / f"a{k}", TINY, k, rank=4, targets=("q_proj",))
        m.register(f"a{k}", tmp_path / f"a{k}")
    assert m.num_loaded == 2  # a0 evicted when a2 came
    first = m.acquire("a1")
    assert m.acquire("a1") is first  # a hit
    again = m.acquire("a0")  # read from disk again: a new load, a new uid (its own prefix-cache blocks)
    assert again.uid not in (first.uid,) and m.num_loaded == 2
    m.unregister("a0")
    with pytest.raises(AdapterError) as e:
        m.acquire("a0")
    assert e.value.field == "model"


def test_rank_above_the_server_max_is_refused(tmp_path):
    m = LoraManager(Shapes.of(TINY), LoraConfig(max_loras=1, max_lora_rank=4))
    write_adapter(tmp_path / "big", TINY, 1, rank=8, targets=("q_proj",))
    with pytest.raises(AdapterError) as e:
        m.register("big", tmp_path / "big")
    assert e.value.field == "r" and m.names() == []
