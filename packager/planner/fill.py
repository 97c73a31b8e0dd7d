"""Fill the node: how many copies of a profile's instance the pool holds, and what that leaves idle.

Throughput fills every node: replicas x tp x pp = devices per node, one pod per replica. Replicas
share nothing (no NCCL between them), restart and scale one at a time, and the Service spreads the
requests; vLLM's `--data-parallel-size` in one pod would put them behind one process and one failure
domain, which pays off for MoE expert parallelism, not planned here. Latency keeps the fastest single
instance and cost the smallest; both say what the devices they leave could do.
"""
from __future__ import annotations

from dataclasses import replace

from packager.planner.types import NodeFill, Profile

FILLS = {"throughput": "pods", "latency": "single", "cost": "single"}


def node_fill(p: Profile, objective: str) -> NodeFill:
    c = p.candidate
    pool = c.pool
    per_instance = p.estimates.decode_tokens_per_s_full_batch
    if not pool.accelerator.is_gpu:  # the fallback on CPU uses the whole node's cores: one pod per node
        copies = pool.nodes if FILLS.get(objective) == "pods" else 1
        return NodeFill(copies, 1, copies, 0, per_instance, FILLS.get(objective, "single"))
    if c.nodes > 1:  # one instance spans whole nodes (a LeaderWorkerSet group)
        groups = max(1, pool.nodes // c.nodes) if FILLS.get(objective) == "pods" else 1
        idle = pool.count * c.nodes - c.devices
        return NodeFill(groups, 0, groups * c.devices, idle // c.nodes, round(per_instance / c.nodes, 1),
                        FILLS.get(objective, "single"))
    fit = pool.count // c.devices
    if FILLS.get(objective) == "pods":
        return NodeFill(fit * pool.nodes, fit, fit * c.devices * pool.nodes, pool.count - fit * c.devices,
                        round(fit * per_instance, 1), "pods")
    return NodeFill(1, 1, c.devices, pool.count - c.devices, per_instance, "single")


def fill(profiles: list[Profile], objective: str) -> list[Profile]:
    """Every ranked profile with its fill (a pinned profile carries its own into the chart)."""
    return [replace(p, fill=node_fill(p, objective)) for p in profiles]


def _devices(n: int) -> str:
    return f"{n} device{'s' if n != 1 else ''}"


def _bigger_estimate(p: Profile, ranked: list[Profile]) -> Profile | None:
    """A larger tp of the same kind whose estimate per node beats the winner's replicas, if any."""
    c = p.candidate
    same = [q for q in ranked if q.fill and q.candidate.devices > c.devices and q.candidate.nodes == 1
            and (q.candidate.runtime, q.candidate.precision, q.candidate.kv_cache_dtype, q.candidate.objective,
                 q.candidate.pool.name, q.low_memory) == (c.runtime, c.precision, c.kv_cache_dtype, c.objective,
                                                         c.pool.name, p.low_memory)]
    best = max(same, key=lambda q: q.fill.tokens_per_s_per_node, default=None)
    return best if best and best.fill.tokens_per_s_per_node > p.fill.tokens_per_s_per_node else None


def explain_fill(ranked: list[Profile]) -> str:
    """A clause for the plan's one-sentence why: the replicas, the estimate per node, the idle devices and their use."""
    p = ranked[0]
    f, c = p.fill, p.candidate
    if f is None:
        return ""
    per_node = c.pool.count
    if f.replicas == 1 and not f.idle_devices_per_node:
        return ""  # one instance on the whole pool: nothing to add
    if f.how == "pods":
        if f.replicas_per_node == 0:
            text = (f"{f.replicas} group{'s' if f.replicas != 1 else ''} of {c.nodes} nodes fill the pool's "
                    f"{c.pool.nodes} nodes")
        else:
            text = (f"{f.replicas_per_node} replica{'s' if f.replicas_per_node != 1 else ''} x "
                    f"{_devices(c.devices)} fill each node's {per_node} devices ({f.replicas} in all, one pod each: "
                    "replicas share nothing, restart and scale one at a time, and the Service spreads requests)")
        text += f", about {f.tokens_per_s_per_node:,.0f} tokens/s per node at full batch"
        bigger = _bigger_estimate(p, ranked) if f.replicas_per_node > 1 else None
        if bigger:  # the roofline counts all-reduce latency only; a full batch also moves batch x hidden per layer
            text += (f" (tp={bigger.candidate.tp} estimates {bigger.fill.tokens_per_s_per_node:,.0f} per node, but the "
                     "estimate leaves out the all-reduce traffic of a full batch, which replicas do not have)")
        if f.idle_devices_per_node:
            text += f", with {_devices(f.idle_devices_per_node)} per node idle (fewer than one more replica needs)"
        return text
    if not f.idle_devices_per_node or c.nodes > 1:
        return ""
    more = f.idle_devices_per_node // c.devices
    use = (f"they hold {more} more cop{'ies' if more != 1 else 'y'} of this instance (--set replicaCount={more + 1}) "
           "for more traffic at the same speed, or `--objective throughput` plans the whole node") if more else \
        "they can serve another model"
    return f"it leaves {f.idle_devices_per_node} of {per_node} devices per node idle: {use}"
