"""docs/grafana/telemetry-overview.json: an importable dashboard whose every query uses metric
names that /metrics really serves, once known input has made every family exist."""

from __future__ import annotations

import json
import re

import pytest
from asgiref.sync import async_to_sync
from prometheus_client.parser import text_string_to_metric_families

from core import events, selfmetrics
from core.tasks import record_worker_heartbeat
from quality.models import LlmUsage
from tests.runs.factories import make_run
from tests.services import PROMETHEUS_ACCEPT, ROOT

pytestmark = pytest.mark.django_db

DASHBOARD = ROOT / "docs" / "grafana" / "telemetry-overview.json"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}

IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
# Numbers and durations: 0.95, .5, 1e-3, 0x1f, 5m, 1h30m (an identifier never starts with a digit).
NUMBER = re.compile(r"(?:0[xX][0-9a-fA-F]+|[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)[a-zA-Z0-9_]*")
NAME_MATCHER = re.compile(r"""(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)""")
# Keywords (PromQL matches them in any case): a label list in parentheses may follow the first group.
LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile"}
KEYWORDS = LABEL_LISTS | AGGREGATIONS | {"limitk", "limit_ratio", "and", "or", "unless", "atan2", "bool", "offset", "inf", "nan"}
# fmt: off
FUNCTIONS = {
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh", "avg_over_time", "ceil",
    "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh", "count_over_time", "day_of_month", "day_of_week",
    "day_of_year", "days_in_month", "deg", "delta", "deriv", "double_exponential_smoothing", "end", "exp", "floor",
    "histogram_avg", "histogram_count", "histogram_fraction", "histogram_quantile", "histogram_stddev", "histogram_stdvar",
    "histogram_sum", "holt_winters", "hour", "idelta", "increase", "info", "irate", "label_join", "label_replace",
    "last_over_time", "ln", "log10", "log2", "mad_over_time", "max_over_time", "min_over_time", "minute", "month", "pi",
    "predict_linear", "present_over_time", "quantile_over_time", "rad", "rate", "resets", "round", "scalar", "sgn", "sin",
    "sinh", "sort", "sort_by_label", "sort_by_label_desc", "sort_desc", "sqrt", "start", "stddev_over_time",
    "stdvar_over_time", "sum_over_time", "tan", "tanh", "time", "timestamp", "vector", "year",
}
# fmt: on


def _skip_string(expr: str, pos: int) -> int:
    """The position past the string literal starting at pos ("...", '...' with escapes, `...` raw)."""
    quote, pos = expr[pos], pos + 1
    while pos < len(expr):
        if expr[pos] == "\\" and quote != "`":
            pos += 2
        elif expr[pos] == quote:
            return pos + 1
        else:
            pos += 1
    raise ValueError(f"unterminated string in {expr!r}")


def _skip_past(expr: str, pos: int, closer: str) -> int:
    """The position past the first `closer` after pos that is not inside a string literal."""
    while pos < len(expr):
        if expr[pos] in "\"'`":
            pos = _skip_string(expr, pos)
        elif expr[pos] == closer:
            return pos + 1
        else:
            pos += 1
    raise ValueError(f"missing {closer!r} in {expr!r}")


def _next_char(expr: str, pos: int) -> str:
    rest = expr[pos:].lstrip()
    return rest[:1]


def _matchers(expr: str, pos: int, names: set[str]) -> int:
    """Past the label matchers `{...}` at pos; a `__name__="..."` matcher names a metric."""
    end = _skip_past(expr, pos, "}")
    inside = pos + 1
    while inside < end - 1:
        if expr[inside] in "\"'`":
            inside = _skip_string(expr, inside)
        elif word := IDENTIFIER.match(expr, inside):
            inside = word.end()
            matcher = NAME_MATCHER.match(expr[inside:].lstrip()) if word.group() == "__name__" else None
            if matcher and matcher.group(1) != "=":
                raise ValueError(f"cannot check a metric name matched by {matcher.group(1)!r} in {expr!r}")
            if matcher:
                names.add(matcher.group(2)[1:-1])
        else:
            inside += 1
    return end


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions, keywords,
    label names (in `{...}` or after by/without/on/ignoring/group_*), nor inside strings, range
    selectors `[5m]`, comments or Grafana variables ($__rate_interval, ${var})."""
    names: set[str] = set()
    pos = 0
    while pos < len(expr):
        char = expr[pos]
        if char in "\"'`":
            pos = _skip_string(expr, pos)
        elif char == "#":
            newline = expr.find("\n", pos)
            pos = len(expr) if newline < 0 else newline
        elif char == "[":
            pos = _skip_past(expr, pos, "]")
        elif char == "{":
            pos = _matchers(expr, pos, names)
        elif char == "$":
            variable = IDENTIFIER.match(expr, pos + 1)
            pos = _skip_past(expr, pos, "}") if expr.startswith("${", pos) else variable.end() if variable else pos + 1
        elif number := NUMBER.match(expr, pos):
            pos = number.end()
        elif word := IDENTIFIER.match(expr, pos):
            pos = word.end()
            name, following = word.group(), _next_char(expr, word.end())
            if name.lower() in LABEL_LISTS and following == "(":
                pos = _skip_past(expr, expr.index("(", pos), ")")
            elif name.lower() in KEYWORDS or (name in FUNCTIONS and following == "("):
                pass
            elif following == "(":
                raise ValueError(f"unknown PromQL function {name!r} in {expr!r}")
            else:
                names.add(name)
        else:
            pos += 1
    return names


def panel_exprs(panels: list[dict]) -> list[str]:
    """Every target's expr, in panels and in the panels of rows, however deep."""
    exprs = []
    for panel in panels:
        exprs += [target["expr"] for target in panel.get("targets", []) if target.get("expr")]
        exprs += panel_exprs(panel.get("panels", []))
    return exprs


def all_panels(panels: list[dict]) -> list[dict]:
    return [found for panel in panels for found in [panel, *all_panels(panel.get("panels", []))]]


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        (
            'histogram_quantile(0.95, sum by (le, agent_type) (rate(x_seconds_bucket{job="api", le!="+Inf"}[5m])))',
            {"x_seconds_bucket"},
        ),
        (
            "sum by (tool) (rate(ok_total[$__rate_interval])) / on (tool) group_left sum without (status)"
            ' (rate(calls_total{status=~"ok|rate(fake)"}[5m] offset 1h))',
            {"ok_total", "calls_total"},
        ),
        (
            'label_replace(up, "dst", "$1", "src", "(sum_.*)") > bool 0.5e-3 AND {__name__="boot_time_seconds"}',
            {"up", "boot_time_seconds"},
        ),
        ("time() - max(node:boot_time:seconds) by (job) @ end() # not_a_metric", {"node:boot_time:seconds"}),
        ("max_over_time(deriv(rate(jobs_total[5m])[30m:1m])[1h:]) * ${factor} + Inf", {"jobs_total"}),
        ("topk(10, sum by (tool) (increase(tool_calls_total[1h])))", {"tool_calls_total"}),
    ],
)
def test_metric_names_are_the_selected_series_only(expr, expected):
    assert metric_names(expr) == expected


@pytest.mark.parametrize("expr", ["ratee(x[5m])", 'x{__name__=~"y.*"}', 'x{job="unterminated}'])
def test_metric_names_refuses_what_it_cannot_check(expr):
    with pytest.raises(ValueError):
        metric_names(expr)


def test_panel_exprs_reaches_into_rows():
    panels = [
        {"type": "row", "panels": [{"targets": [{"expr": "a"}, {"refId": "B"}]}]},
        {"targets": [{"expr": "b"}]},
        {"type": "text"},
    ]
    assert panel_exprs(panels) == ["a", "b"]


def test_the_dashboard_is_importable():
    dashboard = json.loads(DASHBOARD.read_text())
    assert (dashboard["uid"], dashboard["title"]) == ("telemetry-overview", "Agent telemetry overview")
    assert [(i["name"], i["type"], i["pluginId"]) for i in dashboard["__inputs"]] == [
        ("DS_PROMETHEUS", "datasource", "prometheus")
    ]
    panels = all_panels(dashboard["panels"])
    assert len({panel["id"] for panel in panels}) == len(panels)
    queried = [panel for panel in panels if panel["type"] != "row"]
    assert queried and all(panel["datasource"] == DATASOURCE and panel["targets"] for panel in queried)
    assert all(target["datasource"] == DATASOURCE for panel in queried for target in panel["targets"])


def point(name: str, metric_type: str, value: float, **labels: str) -> dict:
    return {"agent_name": "alpha", "name": name, "metric_type": metric_type, "value": value, "labels": labels}


# The SDK's agent metrics, each with its labels.
KNOWN = [
    point("agent_execution_total", "counter", 1, agent_type="coder", phase="plan", status="success"),
    point("agent_execution_duration_seconds", "histogram", 12.5, agent_type="coder", phase="plan"),
    point("agent_tokens_used", "counter", 5400, agent_type="coder", model="claude-sonnet-4"),
    point("tool_calls_total", "counter", 1, tool="bash", status="success"),
    point("tool_call_duration_seconds", "histogram", 0.4, tool="bash"),
    point("tool_call_success_total", "counter", 1, tool="bash"),
    point("tool_call_failure_total", "counter", 1, tool="bash", error_type="timeout"),
    point("context_window_utilization", "gauge", 25, agent_id="alpha", session_id="s1"),
    point("context_window_size_tokens", "gauge", 200_000, agent_id="alpha"),
    point("context_window_used_tokens", "gauge", 50_000, agent_id="alpha"),
    point("error_total", "counter", 1, component="planner", error_type="ValueError", severity="error"),
    point("task_queue_size", "gauge", 3, priority="high"),
    point("task_duration_seconds", "histogram", 2, task_type="index", status="success"),
    point("task_success_total", "counter", 1, task_type="index"),
    point("task_failure_total", "counter", 1, task_type="index", error_type="timeout"),
]


def served_names(text: str) -> set[str]:
    """The sample names of a scrape (a histogram's _bucket, _sum and _count; a counter's _total)."""
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def test_every_metric_the_dashboard_queries_is_served(agent, admin_client):
    exprs = panel_exprs(json.loads(DASHBOARD.read_text())["panels"])
    assert exprs and all(metric_names(expr) for expr in exprs)  # every query selects some metric
    used = set().union(*map(metric_names, exprs))
    server_row = ["telemetry_server_requests_total", "telemetry_server_request_duration_seconds_bucket"]
    server_row += ["telemetry_server_shed_total", "telemetry_server_waits_held", "telemetry_server_websocket_clients"]
    server_row += ["telemetry_server_celery_queue_length", "telemetry_server_celery_task_failures_total"]
    assert set(server_row) <= used
    sent = agent.post("/api/v1/metrics", [{**item, "event_id": f"g{i}"} for i, item in enumerate(KNOWN)], format="json")
    assert sent.status_code == 200, sent.json()
    make_run("alpha", status="success")
    LlmUsage.objects.create(event_id="u1", agent_name="alpha", model="m", tier="cheap", cost="0.1", input_tokens=10)
    events.publish_now([events.Event("signal.sent", {})])
    selfmetrics.count_request("heartbeat", 200, 0.002)  # as the web server's middleware counts a request
    async_to_sync(selfmetrics.flush)()
    record_worker_heartbeat.apply(args=["unexpected"])  # a failed task
    response = admin_client.get("/metrics", HTTP_ACCEPT=PROMETHEUS_ACCEPT)
    assert response.status_code == 200
    missing = used - served_names(response.content.decode())
    assert not missing, f"the dashboard queries metrics /metrics does not serve: {sorted(missing)}"
