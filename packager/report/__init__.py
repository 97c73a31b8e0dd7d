"""The plan as one self-contained HTML page: memory per profile, speed against concurrency, rejections.

Charts are Plotly figures; plotly.js (shipped inside the plotly wheel) is inlined once, so the page
needs no network when it is opened. Numbers come from the plan and the planner's own estimate code.
"""
from __future__ import annotations

import html
import json
import math
from pathlib import Path

from packager.errors import UserError
from packager.planner.estimates import GiB, step_seconds
from packager.planner.types import Plan, Profile

MAX_SPEED_LINES = 8  # the ranked profiles drawn in the speed chart (the selected one always among them)
SEGMENTS = (  # (label, colour): the memory bar of one device, left to right
    ("weights", "#4C78A8"), ("activations", "#F58518"), ("non-torch + CUDA graphs", "#E45756"),
    ("KV cache", "#54A24B"), ("free in the budget", "#D8E8D0"), ("outside the utilisation budget", "#BAB0AC"),
)


def _plotly():
    try:
        import plotly.graph_objects as go
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise UserError("the report needs plotly, which is not installed", field="report",
                        hint="pip install 'packager[report]'") from None
    return go, get_plotlyjs


def _label(p: Profile, selected: Profile | None) -> str:
    return ("★ " if p is selected else "") + p.name + (" (low memory)" if p.low_memory else "")


def memory_parts(p: Profile) -> list[float]:
    """GiB per device for each SEGMENTS entry; they add up to the device memory the engine sees."""
    e = p.estimates
    device = e.device_memory_bytes or e.memory_budget_bytes_per_device
    room = e.kv_cache_bytes_per_device  # vLLM takes all of it; the fallback runtime whole slots of it
    kv = room if p.runtime == "vllm" else min(room, e.kv_cache_tokens * e.kv_cache_bytes_per_token_per_device)
    overheads = e.non_torch_bytes_per_device + e.cuda_graph_bytes_per_device
    parts = [e.weights_bytes_per_device, e.activation_bytes_per_device, overheads, kv, room - kv,
             max(0, device - e.memory_budget_bytes_per_device)]
    return [x / GiB for x in parts]


def concurrency_curve(plan: Plan, p: Profile) -> tuple[list[int], list[float]]:
    """Aggregate decode tokens/s at 1, 2, 4, ... concurrent sequences, up to what the KV cache holds."""
    e, model, c = p.estimates, plan.request.model, p.candidate
    top = e.full_batch  # as many as the KV cache holds at the typical context (the plan's full batch)
    xs = sorted({min(top, 2 ** i) for i in range(0, 12)} | {top})
    context = min(p.max_model_len, 4096) // 2
    ys = [round(b / step_seconds(model, c, batch=b, context=context, weights_per_device=e.weights_bytes_per_device,
                                 kv_bytes_per_token_per_device=e.kv_cache_bytes_per_token_per_device), 1) for b in xs]
    return xs, ys


def memory_figure(plan: Plan):
    go, _ = _plotly()
    sel = plan.selected
    profiles = list(plan.candidates)[::-1]  # plotly draws the first category at the bottom: best on top
    names = [_label(p, sel) for p in profiles]
    parts = [memory_parts(p) for p in profiles]
    fig = go.Figure()
    for i, (label, colour) in enumerate(SEGMENTS):
        fig.add_trace(go.Bar(y=names, x=[round(row[i], 2) for row in parts], name=label, orientation="h",
                             marker_color=colour, hovertemplate="%{y}<br>" + label + ": %{x:.2f} GiB<extra></extra>"))
    fig.update_layout(barmode="stack", title="Memory per device (GiB): what fills each GPU or host",
                      height=160 + 28 * len(profiles), margin=dict(l=10, r=10, t=60, b=40),
                      xaxis_title="GiB per device", legend=dict(orientation="h", y=-0.12 if len(profiles) > 3 else -0.4))
    return fig


def speed_figure(plan: Plan):
    go, _ = _plotly()
    sel = plan.selected
    shown = list(plan.candidates[:MAX_SPEED_LINES])
    fig = go.Figure()
    for p in shown:
        xs, ys = concurrency_curve(plan, p)
        chosen = p is sel
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=_label(p, sel),
                                 line=dict(width=4 if chosen else 1.5), marker=dict(size=9 if chosen else 5),
                                 hovertemplate="%{x} sequences: %{y:.1f} tokens/s<extra>" + p.name + "</extra>"))
    if sel is not None:
        xs, ys = concurrency_curve(plan, sel)
        fig.add_annotation(x=math.log10(xs[-1]), y=ys[-1], text=f"selected: {sel.name}", showarrow=True,
                           arrowhead=2)  # a log axis places annotations in log10 units
    fig.update_layout(title="Decode speed against concurrency (all sequences together)",
                      xaxis=dict(type="log", title="concurrent sequences (up to what the KV cache holds at the typical context)",
                                 dtick=0.30102999566),
                      yaxis_title="tokens/s", height=480, margin=dict(l=10, r=10, t=60, b=40))
    return fig


def _table(headers: list[str], rows: list[list[str]], marked: int | None = None) -> str:
    """Row `marked` (the selected profile) carries class `selected` and a bold look."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(("<tr class='selected'>" if i == marked else "<tr>")
                   + "".join(f"<td>{html.escape(str(x))}</td>" for x in r) + "</tr>" for i, r in enumerate(rows))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1300px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px}code{background:#f3f3f3;padding:2px 4px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
tr.selected td{font-weight:600;background:#eef6ee}
.why{font-size:16px;background:#eef6ee;padding:10px;border-left:4px solid #54A24B}"""

ERROR_HOOK = ("<script>window.__jsErrors=0;window.addEventListener('error',function(){window.__jsErrors++;"
              "document.body.setAttribute('data-js-errors',String(window.__jsErrors));});</script>")


def report_html(plan: Plan) -> str:
    go, get_plotlyjs = _plotly()
    req, sel = plan.request, plan.selected
    m = req.model
    pools = ", ".join(f"{p.count} x {p.accelerator.key} x {p.nodes} node(s)" for p in req.hardware.pools)
    figs = [memory_figure(plan), speed_figure(plan)] if plan.candidates else []
    charts = "".join(f.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False}) for f in figs)
    if sel is not None:
        head = (f"<p class='why'>{html.escape(plan.why)}</p><p>Engine command line:</p>"
                f"<p><code>{html.escape(' '.join(sel.engine_argv))}</code></p>"
                + "".join(f"<p>note: {html.escape(n)}</p>" for n in sel.notes))
    else:
        head = "<p class='why'>Nothing fits this hardware.</p>" + "".join(
            f"<p>advice: {html.escape(a)}</p>" for a in plan.advice)
    e = sel.estimates if sel else None
    # Two different counts, named apart: what fits at full length (the CLI's FIT@CTX) and the engine's cap.
    facts = _table(["profile", "devices", "replicas per node", "context", "sequences that fit at full context",
                    "--max-num-seqs", "KV tokens", "tokens/s at 1", "tokens/s at full batch", "tokens/s per node"],
                   [[("* " if p is sel else "") + p.name, p.candidate.devices,
                     p.fill.replicas_per_node if p.fill else 1, p.max_model_len,
                     p.estimates.concurrent_sequences, p.max_num_seqs, f"{p.estimates.kv_cache_tokens:,}",
                     p.estimates.decode_tokens_per_s, p.estimates.decode_tokens_per_s_full_batch,
                     p.fill.tokens_per_s_per_node if p.fill else p.estimates.decode_tokens_per_s_full_batch]
                    for p in plan.candidates], marked=0 if sel else None)
    rejected = _table(["profile", "why it cannot run"], [[r.name, "; ".join(r.reasons)] for r in plan.rejected])
    data = json.dumps({"selected": sel.name if sel else None, "charts": len(figs),
                       "profiles": len(plan.candidates), "rejected": len(plan.rejected)})
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>packager plan: {html.escape(m.name)}</title>
<style>{CSS}</style>{ERROR_HOOK}<script>{get_plotlyjs()}</script></head>
<body data-js-errors="0" data-report='{html.escape(data)}'>
<h1>Plan: {html.escape(m.name)} on {html.escape(req.hardware.name)} ({html.escape(pools)})</h1>
<p>Objective: {html.escape(req.objective)} · context wanted: {req.max_model_len or m.context_length} tokens ·
{len(plan.candidates)} compatible profiles, {len(plan.rejected)} rejected</p>
{head}
{'<p>Estimate basis: ' + html.escape(e.basis) + '</p>' if e else ''}
<h2>Charts</h2>{charts or '<p>No compatible profile: no charts.</p>'}
<h2>Compatible profiles, ranked (* selected)</h2>{facts}
<h2>Rejected profiles and why</h2>{rejected}
<p>Estimates are checked against public vLLM measurements in packager/planner/calibration.yaml.</p>
</body></html>
"""


def write_report(plan: Plan, out: str | Path) -> Path:
    path = Path(out)
    try:
        path.write_text(report_html(plan), encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write the report: {exc.strerror}", file=str(path), field="--out") from None
    return path
