"""The decision record as HTML, for Jupyter (``Decision._repr_html_``).

One self-contained ``<div>``: a header line (policy, status, answering model, cost against the
worst case), the effective settings, the candidates and why the others were excluded, and one
table row per attempt with its checks. Every value from the record is HTML-escaped.

Example:
    >>> from router import Decision
    >>> Decision.from_message(router.invoke("What is 2+2?"))   # in a notebook: renders as a table
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from router.checks.builtin import CheckResult
    from router.routing.decision import Attempt, Decision

_STATUS_COLOUR = {"accepted": "#1a7f37", "exhausted": "#9a6700", "failed": "#cf222e", "explained": "#0969da"}
_CELL = 'style="padding:2px 8px;text-align:left;border-bottom:1px solid #ddd"'


def decision_html(decision: Decision) -> str:
    """The whole record as one HTML fragment."""
    colour = _STATUS_COLOUR.get(decision.status, "inherit")
    eff = decision.effective
    settings = ", ".join(f"{escape(str(k))}={escape(str(v))}" for k, v in eff.items())
    rule = f" (rule <code>{escape(decision.rule)}</code>)" if decision.rule else ""
    excluded = "".join(f"<li><code>{escape(e.model)}</code>: {escape(e.reason)}</li>" for e in decision.excluded)
    header = "".join(f"<th {_CELL}>{h}</th>" for h in
                     ("model", "verdict", "latency", "tokens in+out", "cost (USD)", "checks"))
    rows = "".join(_attempt_row(a) for a in decision.attempts) or (
        f"<tr><td {_CELL} colspan=\"6\"><i>no model called</i></td></tr>")
    table = f"<table><thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>"
    return (
        '<div class="policy-router-decision" style="font-family:sans-serif;font-size:13px">'
        f"<p><b>policy</b> <code>{escape(decision.policy)}</code> · <b>status</b> "
        f'<span style="color:{colour};font-weight:bold">{escape(decision.status)}</span> · '
        f"<b>answered by</b> <code>{escape(str(decision.final_model or '(nobody)'))}</code> · "
        f"<b>cost</b> ${decision.total_cost_usd:.6f} (worst case ${decision.estimated_cost_usd:.6f})</p>"
        f"<p><b>effective</b>: {settings}{rule}</p>"
        f"<p><b>candidates</b>: {escape(', '.join(decision.candidates)) or '(none)'}</p>"
        + (f"<p><b>excluded</b>:</p><ul>{excluded}</ul>" if excluded else "")
        + f"{table}</div>"
    )


def _attempt_row(a: Attempt) -> str:
    if a.accepted:
        verdict = '<span style="color:#1a7f37">✔ accepted</span>'
    elif a.error:
        verdict = f'<span style="color:#cf222e">✘ error: {escape(str(a.error.get("kind")))}</span>'
    else:
        verdict = '<span style="color:#9a6700">✘ rejected</span>'
    cost = f"{a.total_cost_usd:.6f}" + (" (est.)" if a.cost_estimated else "")
    checks = "<br>".join(_check(c) for c in a.checks) or "—"
    cells = (f"<code>{escape(a.model)}</code>", verdict, f"{a.latency_s:.2f}s",
             f"{a.input_tokens}+{a.output_tokens}", cost, checks)
    return "<tr>" + "".join(f"<td {_CELL}>{c}</td>" for c in cells) + "</tr>"


def _check(c: CheckResult) -> str:
    mark = "✔" if c.passed else "✘"
    score = f" {c.score:.3g}" if isinstance(c.score, (int, float)) else ""
    detail = f" <small>{escape(c.detail)}</small>" if c.detail else ""
    return f"{mark} {escape(c.check)}{score}{detail}"
