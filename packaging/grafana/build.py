#!/usr/bin/env python3
"""Writes the two Grafana dashboards of vibe-agent next to this script:

  vibe-services.json     "VIBE services"  (uid vibe-services)
  vibe-claude-code.json  "Claude Code"    (uid vibe-claude-code)

The JSON files are what ships (packaging copies packaging/grafana/*.json); this script is
their source, so a change is made here and both files are regenerated:

  python3 packaging/grafana/build.py

Conventions: the datasource is the `datasource` variable (any Prometheus-compatible one:
Prometheus, VictoriaMetrics); `ins` and `instance` come from label_values() and default to
All, so nothing names a box. Every query filters on both. Recording rules of
rules/vibe-agent.yml are used where they exist. tests/it/rules.rs checks that every metric a
query names is exported by the agent or recorded by a rule.
"""

import json
import os
import sys

DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'ins=~"$ins", instance=~"$instance"'


def sel(extra=""):
    """The label matchers of every query: the box variables, then `extra`."""
    return "{" + SEL + (", " + extra if extra else "") + "}"


FAILED = sel('state="failed"')
# process_* is every exporter's: only the agent's job
AGENT = sel('job=~"$job"')
# vibe_claude_active_sessions: the per-user series come from transcripts
PER_USER = sel('user!=""')
SUCCEEDED = sel('success="true"')

# vibe_unit_state one-hot over the states, folded into one number per unit for a state
# timeline: 0 none (reloading), then the states in this order.
UNIT_STATES = [
    ("reloading", "purple"),
    ("active", "green"),
    ("activating", "blue"),
    ("deactivating", "orange"),
    ("inactive", "text"),
    ("failed", "red"),
]
UNIT_STATE = " + ".join(
    f'max by (ins, instance, unit) (vibe_unit_state{sel(f"state={json.dumps(name)}")}) * {i}'
    for i, (name, _) in enumerate(UNIT_STATES)
    if i > 0
)


class Board:
    """Lays panels out on Grafana's 24-column grid, row by row."""

    def __init__(self):
        self.panels = []
        self.next_id = 1
        self.x = 0
        self.y = 0
        self.row_h = 0

    def _id(self):
        i = self.next_id
        self.next_id += 1
        return i

    def row(self, title):
        self._newline()
        self.panels.append(
            {
                "type": "row",
                "id": self._id(),
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.y += 1

    def _newline(self):
        if self.x > 0:
            self.y += self.row_h
            self.x = 0
            self.row_h = 0

    def _place(self, w, h):
        if self.x + w > 24:
            self._newline()
        pos = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def panel(self, kind, title, targets, w=8, h=7, unit="short", desc="", **opts):
        p = {
            "type": kind,
            "id": self._id(),
            "title": title,
            "description": desc,
            "datasource": DS,
            "gridPos": self._place(w, h),
            "targets": [
                {
                    "datasource": DS,
                    "refId": chr(ord("A") + i),
                    "expr": expr,
                    "legendFormat": legend,
                    "range": kind not in ("table",),
                    "instant": kind in ("table",),
                    **({"format": "table"} if kind == "table" else {}),
                }
                for i, (expr, legend) in enumerate(targets)
            ],
            "fieldConfig": {
                "defaults": {"unit": unit, **opts.pop("defaults", {})},
                "overrides": opts.pop("overrides", []),
            },
            "options": opts.pop("options", {}),
        }
        if kind == "timeseries":
            p["fieldConfig"]["defaults"].setdefault(
                "custom", {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never"}
            )
            p["options"].setdefault("legend", {"displayMode": "list", "placement": "bottom", "showLegend": True})
            p["options"].setdefault("tooltip", {"mode": "multi", "sort": "desc"})
        if kind == "stat":
            p["options"].setdefault(
                "reduceOptions", {"calcs": ["lastNotNull"], "fields": "", "values": False}
            )
            p["options"].setdefault("colorMode", "value")
            p["options"].setdefault("graphMode", "area")
        if kind == "bargauge":
            p["options"].setdefault(
                "reduceOptions", {"calcs": ["lastNotNull"], "fields": "", "values": False}
            )
            p["options"].setdefault("displayMode", "gradient")
            p["options"].setdefault("orientation", "horizontal")
        if kind == "state-timeline":
            p["options"].setdefault("mergeValues", True)
            p["options"].setdefault("showValue", "never")
        p.update(opts)
        self.panels.append(p)
        return p


def up_down_mappings():
    return [
        {
            "type": "value",
            "options": {
                "0": {"text": "DOWN", "color": "red", "index": 0},
                "1": {"text": "UP", "color": "green", "index": 1},
            },
        }
    ]


def thresholds(*steps):
    """steps: (value or None, color) pairs, first value None."""
    return {
        "mode": "absolute",
        "steps": [{"value": v, "color": c} for v, c in steps],
    }


def variables(extra=()):
    """datasource, ins and instance (label_values of the agent's build info), then extra."""
    v = [
        {
            "name": "datasource",
            "label": "Datasource",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "refresh": 1,
            "regex": "",
            "options": [],
        },
        query_var("ins", "Instance (ins)", "label_values(vibe_agent_build_info, ins)"),
        query_var(
            "instance",
            "Target",
            'label_values(vibe_agent_build_info{ins=~"$ins"}, instance)',
        ),
    ]
    v.extend(extra)
    return {"list": v}


def query_var(name, label, query):
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "definition": query,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        # Boxes scraped without Pigsty's labels have no `ins`: `.*` also matches the
        # empty value, so "All" shows them too.
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
        "hide": 0,
        "regex": "",
        "options": [],
    }


def dashboard(uid, title, tags, board, templating, desc):
    return {
        "uid": uid,
        "title": title,
        "description": desc,
        "tags": tags,
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {
                "type": "dashboards",
                "tags": ["vibe"],
                "asDropdown": False,
                "includeVars": True,
                "keepTime": True,
                "title": "VIBE",
                "icon": "external link",
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            }
        ],
        "templating": templating,
        "panels": board.panels,
    }


# ---------------------------------------------------------------------------------------
# VIBE services
# ---------------------------------------------------------------------------------------


def services():
    b = Board()
    b.row("Overview")
    b.panel(
        "stat",
        "Services down",
        [(f"sum(vibe:ins:services_down{sel()})", "down")],
        w=4,
        h=5,
        desc="Installed services of the box that are not fully up: unit not active, port not listening or health probe failing (recording rule vibe:ins:services_down; an absent service is not counted).",
        defaults={"thresholds": thresholds((None, "green"), (1, "red"))},
    )
    b.panel(
        "stat",
        "Service up",
        # 2 for an absent service (no unit file, nothing listening): not installed, not down
        [(f"vibe_service_up{sel()} + 2 * (1 - vibe_service_present{sel()})", "{{service}} @ {{ins}}")],
        w=8,
        h=5,
        desc="UP when every enabled check of the service passes (unit, port, health); ABSENT when the box does not have it (systemd has no unit file and nothing listens on its port: vibe_service_present 0), which raises no alert.",
        defaults={
            "mappings": [
                {
                    "type": "value",
                    "options": {
                        "0": {"text": "DOWN", "color": "red", "index": 0},
                        "1": {"text": "UP", "color": "green", "index": 1},
                        "2": {"text": "ABSENT", "color": "text", "index": 2},
                    },
                }
            ],
            "thresholds": thresholds((None, "red"), (1, "green")),
        },
        options={"colorMode": "background", "graphMode": "none"},
    )
    b.panel(
        "stat",
        "Agent sources up",
        [(f"vibe_agent_source_up{sel()}", "{{source}}")],
        w=8,
        h=5,
        desc="Each source of the agent (systemd, probes, host, juicefs, transcripts, otlp): 1 when its last round succeeded.",
        defaults={"mappings": up_down_mappings(), "thresholds": thresholds((None, "red"), (1, "green"))},
        options={"colorMode": "background", "graphMode": "none"},
    )
    b.panel(
        "table",
        "Agent version",
        [(f"vibe_agent_build_info{sel()}", "")],
        w=4,
        h=5,
        options={"showHeader": True},
        transformations=[
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True, "Value": True, "__name__": True, "job": True},
                },
            }
        ],
    )

    b.row("systemd units")
    b.panel(
        "state-timeline",
        "Unit state",
        [(UNIT_STATE, "{{unit}} @ {{ins}}")],
        w=12,
        h=8,
        desc="The unit's ActiveState over time (vibe_unit_state is one-hot; none while reloading).",
        defaults={
            "color": {"mode": "thresholds"},
            "mappings": [
                {
                    "type": "value",
                    "options": {
                        str(i): {"text": name, "color": color, "index": i}
                        for i, (name, color) in enumerate(UNIT_STATES)
                    },
                }
            ],
        },
    )
    b.panel(
        "timeseries",
        "Restarts per hour",
        [(f"vibe:unit:restarts_per_hour{sel()}", "{{unit}} @ {{ins}}")],
        w=6,
        h=8,
        desc="Automatic restarts by systemd (NRestarts) per hour, over 15 minutes. VibeUnitRestarting fires at 3 in 15m.",
    )
    b.panel(
        "timeseries",
        "Unit failed",
        [(f'vibe_unit_state{FAILED}', "{{unit}} @ {{ins}}")],
        w=6,
        h=8,
        desc="1 while the unit is in systemd's failed state (VibeUnitFailed).",
        defaults={"min": 0, "max": 1},
    )
    b.panel(
        "timeseries",
        "Unit memory",
        [(f"vibe_unit_memory_bytes{sel()}", "{{unit}} @ {{ins}}")],
        w=8,
        unit="bytes",
        desc="Memory of the unit's cgroup as systemd accounts it (MemoryCurrent).",
    )
    b.panel(
        "timeseries",
        "Unit CPU",
        [(f"rate(vibe_unit_cpu_seconds_total{sel()}[$__rate_interval])", "{{unit}} @ {{ins}}")],
        w=8,
        unit="short",
        desc="CPU cores used by the unit's cgroup (CPUUsageNSec rate).",
    )
    b.panel(
        "timeseries",
        "Unit tasks",
        [(f"vibe_unit_tasks{sel()}", "{{unit}} @ {{ins}}")],
        w=8,
        desc="Tasks (threads) in the unit's cgroup.",
    )
    b.panel(
        "table",
        "Units",
        [
            (f"vibe_unit_info{sel()}", ""),
            (f"time() - vibe_unit_active_since_timestamp_seconds{sel()}", ""),
            (f"vibe_unit_restarts_total{sel()}", ""),
            (f"vibe_unit_stale{sel()}", ""),
        ],
        w=24,
        h=7,
        desc="systemd's view of every watched unit: load state, sub-state, result, uptime, restarts, and whether the figures are stale (bus unreachable).",
        transformations=[
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True, "Value #A": True, "__name__": True, "job": True},
                    "renameByName": {
                        "Value #B": "uptime (s)",
                        "Value #C": "restarts",
                        "Value #D": "stale",
                    },
                },
            },
        ],
    )

    b.row("Ports and health probes")
    b.panel(
        "timeseries",
        "Port listening / accepting",
        [
            (f"vibe_port_listening{sel()}", "{{service}}:{{port}} listening"),
            (f"vibe_port_connect_success{sel()}", "{{service}}:{{port}} accepts"),
        ],
        w=8,
        desc="LISTEN in the kernel's socket table, and a TCP connect that succeeded within the timeout.",
        defaults={"min": 0, "max": 1},
    )
    b.panel(
        "timeseries",
        "Connect latency",
        [(f"vibe_port_connect_duration_seconds{sel()}", "{{service}}:{{port}}")],
        w=8,
        unit="s",
    )
    b.panel(
        "timeseries",
        "Health probe up",
        [(f"vibe_http_up{sel()}", "{{service}} @ {{ins}}")],
        w=8,
        desc="1 when the last health probe passed (code-server /healthz, JupyterLab /jupyter/api).",
        defaults={"min": 0, "max": 1},
    )
    b.panel(
        "timeseries",
        "Health probe latency",
        [(f"vibe_http_duration_seconds{sel()}", "{{service}} @ {{ins}}")],
        w=12,
        unit="s",
        desc="Duration of the last health probe. VibeProbeSlow fires above 1 s for 10m.",
        defaults={"thresholds": thresholds((None, "green"), (1, "orange")), "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never", "thresholdsStyle": {"mode": "line"}}},
    )
    b.panel(
        "timeseries",
        "Health probe HTTP status",
        [(f"vibe_http_status_code{sel()}", "{{service}} @ {{ins}}")],
        w=12,
        unit="none",
        desc="HTTP status of the last health probe (0: no response).",
    )

    b.row("code-server and JupyterLab")
    b.panel(
        "stat",
        "code-server heartbeat",
        [(f"vibe_codeserver_heartbeat_alive{sel()}", "{{service}} @ {{ins}}")],
        w=6,
        h=5,
        desc="alive: used within the last minute; expired: idle (not down).",
        defaults={
            "mappings": [
                {
                    "type": "value",
                    "options": {
                        "0": {"text": "idle", "color": "blue", "index": 0},
                        "1": {"text": "alive", "color": "green", "index": 1},
                    },
                }
            ]
        },
        options={"colorMode": "background", "graphMode": "none"},
    )
    b.panel(
        "stat",
        "code-server idle for",
        [(f"time() - vibe_codeserver_last_heartbeat_timestamp_seconds{sel()}", "{{service}} @ {{ins}}")],
        w=6,
        h=5,
        unit="s",
    )
    b.panel(
        "stat",
        "JupyterLab auth",
        [(f"vibe_jupyter_auth_failed{sel()}", "{{service}} @ {{ins}}")],
        w=6,
        h=5,
        desc="FAILING: JupyterLab rejects the agent's token (401/403), so kernels and connections are unknown: fix token/token_file of the service (VibeJupyterAuthFailing).",
        defaults={
            "mappings": [
                {
                    "type": "value",
                    "options": {
                        "0": {"text": "OK", "color": "green", "index": 0},
                        "1": {"text": "FAILING", "color": "red", "index": 1},
                    },
                }
            ]
        },
        options={"colorMode": "background", "graphMode": "none"},
    )
    b.panel(
        "stat",
        "JupyterLab status endpoint",
        [(f"vibe_jupyter_status_up{sel()}", "{{service}} @ {{ins}}")],
        w=6,
        h=5,
        defaults={"mappings": up_down_mappings(), "thresholds": thresholds((None, "red"), (1, "green"))},
        options={"colorMode": "background", "graphMode": "none"},
    )
    b.panel(
        "timeseries",
        "Jupyter kernels and connections",
        [
            (f"vibe_jupyter_kernels{sel()}", "{{service}} kernels"),
            (f"vibe_jupyter_connections{sel()}", "{{service}} connections"),
        ],
        w=12,
    )
    b.panel(
        "timeseries",
        "Jupyter idle for / up for",
        [
            (f"time() - vibe_jupyter_last_activity_timestamp_seconds{sel()}", "{{service}} idle"),
            (f"time() - vibe_jupyter_started_timestamp_seconds{sel()}", "{{service}} up"),
        ],
        w=12,
        unit="s",
    )

    b.row("Per-service processes")
    b.panel(
        "timeseries",
        "Service memory (RSS)",
        [(f"vibe_service_memory_rss_bytes{sel()}", "{{service}} @ {{ins}}")],
        w=8,
        unit="bytes",
        desc="Resident memory of the processes in the service's unit cgroup.",
    )
    b.panel(
        "timeseries",
        "Service CPU",
        [(f"vibe_service_cpu_usage_cores{sel()}", "{{service}} @ {{ins}}")],
        w=8,
        unit="short",
        desc="Cores used by the service's processes.",
    )
    b.panel(
        "timeseries",
        "Service processes",
        [(f"vibe_service_processes{sel()}", "{{service}} @ {{ins}}")],
        w=8,
    )

    b.row("JuiceFS")
    b.panel(
        "stat",
        "Mount up",
        [
            (f"vibe_juicefs_up{sel()}", "{{mount}} up"),
        ],
        w=6,
        h=5,
        desc="1: the mount answered and its client's figures were read (JuiceFSDown).",
        defaults={"mappings": up_down_mappings(), "thresholds": thresholds((None, "red"), (1, "green"))},
        options={"colorMode": "background", "graphMode": "none"},
    )
    b.panel(
        "stat",
        "Mount stuck / missing",
        [
            (f"vibe_juicefs_stuck{sel()}", "{{mount}} stuck"),
            (f"1 - vibe_juicefs_mounted{sel()}", "{{mount}} missing"),
        ],
        w=6,
        h=5,
        desc="stuck: the FUSE client did not answer within the timeout (JuiceFSStuck); missing: configured but not in the mount table.",
        defaults={"thresholds": thresholds((None, "green"), (1, "red"))},
        options={"colorMode": "background", "graphMode": "none"},
    )
    b.panel(
        "bargauge",
        "Quota used",
        [(f"juicefs:mount:quota_usage{sel()}", "{{mount}}")],
        w=6,
        h=5,
        unit="percentunit",
        desc="Used bytes over the volume's capacity or the directory quota (no series without a quota). JuiceFSQuotaFull at 90%.",
        defaults={"min": 0, "max": 1, "thresholds": thresholds((None, "green"), (0.8, "orange"), (0.9, "red"))},
    )
    b.panel(
        "table",
        "Figures source",
        [(f"vibe_juicefs_source_info{sel()}", "")],
        w=6,
        h=5,
        desc="Where the figures came from: stats (<mount>/.stats), metrics (client endpoint) or statfs.",
        transformations=[
            {
                "id": "organize",
                "options": {"excludeByName": {"Time": True, "Value": True, "__name__": True, "job": True}},
            }
        ],
    )
    b.panel(
        "timeseries",
        "Used space and quota",
        [
            (f"vibe_juicefs_used_bytes{sel()}", "{{mount}} used"),
            (f"vibe_juicefs_quota_bytes{sel()}", "{{mount}} quota"),
        ],
        w=8,
        unit="bytes",
    )
    b.panel(
        "timeseries",
        "Used inodes and quota",
        [
            (f"vibe_juicefs_used_inodes{sel()}", "{{mount}} used"),
            (f"vibe_juicefs_quota_inodes{sel()}", "{{mount}} quota"),
        ],
        w=8,
    )
    b.panel(
        "timeseries",
        "Block cache hit ratio",
        [(f"juicefs:mount:cache_hit_ratio{sel()}", "{{mount}}")],
        w=8,
        unit="percentunit",
        desc="Block reads served from the local cache over 5 minutes.",
        defaults={"min": 0, "max": 1},
    )
    b.panel(
        "timeseries",
        "Object store errors per minute",
        [(f"juicefs:mount:object_errors_per_minute{sel()}", "{{mount}}")],
        w=8,
        desc="Failed object-store requests; JuiceFSObjectErrors fires above 10 in 10m.",
    )
    b.panel(
        "timeseries",
        "Cache traffic",
        [
            (f"rate(vibe_juicefs_blockcache_hit_bytes_total{sel()}[$__rate_interval])", "{{mount}} hit"),
            (f"rate(vibe_juicefs_blockcache_miss_bytes_total{sel()}[$__rate_interval])", "{{mount}} miss"),
        ],
        w=8,
        unit="Bps",
    )
    b.panel(
        "timeseries",
        "FUSE operations",
        [
            (f"rate(vibe_juicefs_fuse_operations_total{sel()}[$__rate_interval])", "{{mount}} all"),
            (
                f"sum by (mount, method) (rate(vibe_juicefs_fuse_method_operations_total{sel()}[$__rate_interval]))",
                "{{mount}} {{method}}",
            ),
        ],
        w=8,
        unit="ops",
    )
    b.panel(
        "timeseries",
        "JuiceFS client",
        [
            (f"vibe_juicefs_client_memory_bytes{sel()}", "{{mount}} memory"),
        ],
        w=8,
        unit="bytes",
    )
    b.panel(
        "timeseries",
        "JuiceFS client CPU and open handles",
        [
            (f"rate(vibe_juicefs_client_cpu_seconds_total{sel()}[$__rate_interval])", "{{mount}} cores"),
            (f"vibe_juicefs_fuse_open_handles{sel()}", "{{mount}} open handles"),
        ],
        w=8,
    )
    b.panel(
        "stat",
        "JuiceFS client uptime",
        [(f"vibe_juicefs_client_uptime_seconds{sel()}", "{{mount}}")],
        w=4,
        unit="s",
        options={"graphMode": "none"},
    )
    b.panel(
        "stat",
        "Mount sampling",
        [(f"rate(vibe_juicefs_sampling_rounds_total{sel()}[$__rate_interval]) * 60", "{{ins}}")],
        w=4,
        unit="short",
        desc="Rounds per minute in which the agent visited every JuiceFS mount; keeps going while a mount hangs.",
        options={"graphMode": "area"},
    )

    b.row("Host")
    b.panel(
        "timeseries",
        "CPU",
        [(f"vibe_host_cpu_usage_ratio{sel()}", "{{ins}}")],
        w=8,
        unit="percentunit",
        defaults={"min": 0, "max": 1},
    )
    b.panel(
        "timeseries",
        "Load",
        [
            (f"vibe_host_load1{sel()}", "{{ins}} 1m"),
            (f"vibe_host_load5{sel()}", "{{ins}} 5m"),
            (f"vibe_host_load15{sel()}", "{{ins}} 15m"),
        ],
        w=8,
    )
    b.panel(
        "timeseries",
        "Memory and swap",
        [
            (f"vibe_host_memory_total_bytes{sel()} - vibe_host_memory_available_bytes{sel()}", "{{ins}} memory used"),
            (f"vibe_host_memory_total_bytes{sel()}", "{{ins}} memory total"),
            (f"vibe_host_swap_used_bytes{sel()}", "{{ins}} swap used"),
            (f"vibe_host_swap_total_bytes{sel()}", "{{ins}} swap total"),
        ],
        w=8,
        unit="bytes",
    )

    b.row("Paths")
    b.panel(
        "bargauge",
        "Space used",
        [(f"vibe:fs:usage{sel()}", "{{path}} @ {{ins}}")],
        w=8,
        unit="percentunit",
        desc="statvfs of the sampled paths (VibeFilesystemFull at 90%). A JuiceFS mount without a quota reports a synthetic size: see Quota used.",
        defaults={"min": 0, "max": 1, "thresholds": thresholds((None, "green"), (0.8, "orange"), (0.9, "red"))},
    )
    b.panel(
        "bargauge",
        "Inodes used",
        [(f"1 - vibe_filesystem_files_free{sel()} / vibe_filesystem_files{sel()}", "{{path}} @ {{ins}}")],
        w=8,
        unit="percentunit",
        defaults={"min": 0, "max": 1, "thresholds": thresholds((None, "green"), (0.8, "orange"), (0.9, "red"))},
    )
    b.panel(
        "stat",
        "Path stuck / missing",
        [
            (f"vibe_filesystem_stuck{sel()}", "{{path}} stuck"),
            (f"1 - vibe_filesystem_path_exists{sel()}", "{{path}} missing"),
        ],
        w=8,
        desc="stuck: statvfs did not return within the timeout, a hung mount (VibeFilesystemStuck).",
        defaults={"thresholds": thresholds((None, "green"), (1, "red"))},
        options={"colorMode": "background", "graphMode": "none"},
    )
    b.panel(
        "timeseries",
        "Space available",
        [
            (f"vibe_filesystem_avail_bytes{sel()}", "{{path}} available"),
            (f"vibe_filesystem_free_bytes{sel()}", "{{path}} free"),
            (f"vibe_filesystem_size_bytes{sel()}", "{{path}} size"),
        ],
        w=24,
        unit="bytes",
    )

    b.row("The agent")
    b.panel(
        "timeseries",
        "Source errors",
        [(f"increase(vibe_agent_source_errors_total{sel()}[$__rate_interval])", "{{source}} @ {{ins}}")],
        w=8,
        desc="Errors a source met while collecting (VibeAgentSourceDown after 5m down).",
    )
    b.panel(
        "timeseries",
        "Dropped data",
        [
            (f"increase(vibe_agent_updates_dropped_total{sel()}[$__rate_interval])", "{{ins}} updates (model queue full)"),
            (f"sum by (ins, reason) (increase(vibe_otlp_points_dropped_total{sel()}[$__rate_interval]))", "{{ins}} OTLP points: {{reason}}"),
            (f"sum by (ins, reason) (increase(vibe_otlp_forward_dropped_total{sel()}[$__rate_interval]))", "{{ins}} forwarded bodies: {{reason}}"),
            (f"sum by (ins, family) (increase(vibe_claude_telemetry_series_overflow_total{sel()}[$__rate_interval]))", "{{ins}} series cap: {{family}}"),
        ],
        w=8,
        desc="Any drop fires VibeAgentDroppingData.",
    )
    b.panel(
        "stat",
        "Config reload",
        [
            (f"vibe_agent_config_last_reload_successful{sel()}", "{{ins}} last reload"),
        ],
        w=4,
        desc="FAILED: the last reload was rejected and the previous config runs (VibeAgentConfigReloadFailed); `vibe-agent config check` names the line.",
        defaults={
            "mappings": [
                {
                    "type": "value",
                    "options": {
                        "0": {"text": "FAILED", "color": "red", "index": 0},
                        "1": {"text": "OK", "color": "green", "index": 1},
                    },
                }
            ]
        },
        options={"colorMode": "background", "graphMode": "none"},
    )
    b.panel(
        "stat",
        "Config loaded",
        [(f"vibe_agent_config_last_reload_success_timestamp_seconds{sel()} * 1000", "{{ins}}")],
        w=4,
        unit="dateTimeFromNow",
        options={"graphMode": "none"},
    )
    b.panel(
        "timeseries",
        "Agent memory",
        [
            (f'process_resident_memory_bytes{AGENT}', "{{ins}} RSS"),
        ],
        w=12,
        unit="bytes",
    )
    b.panel(
        "timeseries",
        "Agent CPU and file descriptors",
        [
            (f'rate(process_cpu_seconds_total{AGENT}[$__rate_interval])', "{{ins}} cores"),
            (f'process_open_fds{AGENT} / process_max_fds{AGENT}', "{{ins}} fds used"),
        ],
        w=12,
    )
    job = query_var("job", "Agent job", 'label_values(vibe_agent_build_info{ins=~"$ins"}, job)')
    return dashboard(
        "vibe-services",
        "VIBE services",
        ["vibe", "vibe-agent"],
        b,
        variables([job]),
        "code-server, JupyterLab, systemd units, JuiceFS, host and paths of VIBE boxes, from vibe-agent.",
    )


# ---------------------------------------------------------------------------------------
# Claude Code
# ---------------------------------------------------------------------------------------


def claude():
    b = Board()
    user = sel('user=~"$user"')
    b.row("Overview")
    b.panel(
        "stat",
        "Cost, all time",
        [(f"sum(claude_code:cost_cumulative_total{sel()})", "USD")],
        w=4,
        h=5,
        unit="currencyUSD",
        desc="claude_code.cost.usage from telemetry, cumulative across sessions and agent restarts.",
    )
    b.panel(
        "stat",
        "Cost today",
        [(f"sum(claude_code:cost_today_total{sel()})", "USD")],
        w=4,
        h=5,
        unit="currencyUSD",
        desc="Since local midnight in the agent's otlp.time_zone.",
    )
    b.panel(
        "stat",
        "Burn rate",
        [(f"sum(claude_code:cost_rate_per_minute{sel()}) * 60", "USD/h")],
        w=4,
        h=5,
        unit="currencyUSD",
        desc="USD per hour over 5 minutes; ClaudeCostBurnHigh fires above claude_code:cost_burn_threshold_usd_per_hour for 15m.",
        defaults={"thresholds": thresholds((None, "green"), (10, "orange"), (20, "red"))},
    )
    b.panel(
        "stat",
        "Active sessions",
        [
            (f"sum(claude_code:active_sessions_count{sel()})", "telemetry"),
            (f'sum(vibe_claude_active_sessions{PER_USER})', "transcripts"),
        ],
        w=4,
        h=5,
    )
    b.panel(
        "stat",
        "Tokens, all time",
        [(f"sum(claude_code:tokens_cumulative_total{sel()})", "tokens")],
        w=4,
        h=5,
    )
    b.panel(
        "stat",
        "Telemetry last received",
        [(f"time() - max(vibe_claude_telemetry_last_received_timestamp_seconds{sel()})", "ago")],
        w=4,
        h=5,
        unit="s",
        desc="Seconds since the agent last accepted OTLP from Claude Code (ClaudeTelemetrySilent when transcripts show use but this is older than 30m).",
        defaults={"thresholds": thresholds((None, "green"), (600, "orange"), (1800, "red"))},
        options={"graphMode": "none"},
    )

    b.row("Cost")
    b.panel(
        "timeseries",
        "Cost, cumulative and today",
        [
            (f"sum(claude_code:cost_cumulative_total{sel()})", "cumulative"),
            (f"sum(claude_code:cost_today_total{sel()})", "today"),
        ],
        w=8,
        unit="currencyUSD",
    )
    b.panel(
        "timeseries",
        "Burn rate",
        [
            (f"sum(claude_code:cost_rate_per_minute{sel()}) * 60", "USD/h"),
            ("max(claude_code:cost_burn_threshold_usd_per_hour)", "alert threshold"),
        ],
        w=8,
        unit="currencyUSD",
    )
    b.panel(
        "bargauge",
        "Cost by model (range)",
        [(f"sum by (model) (increase(claude_code_cost_usage_USD_total{sel()}[$__range]))", "{{model}}")],
        w=8,
        unit="currencyUSD",
    )

    b.row("Sessions and tokens")
    b.panel(
        "timeseries",
        "Sessions started",
        [(f"sum by (start_type) (increase(claude_code_session_count_total{sel()}[$__rate_interval]))", "{{start_type}}")],
        w=8,
        desc="claude_code.session.count: fresh, continue, resume.",
        defaults={"custom": {"drawStyle": "bars", "lineWidth": 1, "fillOpacity": 60, "showPoints": "never"}},
    )
    b.panel(
        "timeseries",
        "Tokens by type",
        [(f"sum by (type) (rate(claude_code_token_usage_tokens_total{sel()}[$__rate_interval]))", "{{type}}")],
        w=8,
        unit="short",
        desc="Tokens per second: input, output, cacheRead, cacheCreation.",
    )
    b.panel(
        "timeseries",
        "Tokens by model",
        [(f"sum by (model) (rate(claude_code_token_usage_tokens_total{sel()}[$__rate_interval]))", "{{model}}")],
        w=8,
        unit="short",
    )
    b.panel(
        "timeseries",
        "Tokens, cumulative",
        [(f"sum by (type) (claude_code:tokens_cumulative_total{sel()})", "{{type}}")],
        w=12,
    )
    b.panel(
        "timeseries",
        "Active time",
        [(f"sum by (type) (rate(claude_code_active_time_seconds_total{sel()}[$__rate_interval]))", "{{type}}")],
        w=12,
        unit="percentunit",
        desc="Share of wall time Claude Code was active: cli (working) and user (typing).",
    )

    b.row("API")
    b.panel(
        "timeseries",
        "API latency",
        [
            (
                f"histogram_quantile({q}, sum by (le) (rate(claude_code_api_request_duration_seconds_bucket{sel()}[$__rate_interval])))",
                f"p{int(q * 100)}",
            )
            for q in (0.5, 0.9, 0.99)
        ]
        + [
            (
                f"sum(rate(claude_code_api_request_duration_seconds_sum{sel()}[$__rate_interval])) / sum(rate(claude_code_api_request_duration_seconds_count{sel()}[$__rate_interval]))",
                "mean",
            )
        ],
        w=8,
        unit="s",
        desc="Duration of Claude API requests (api_request events).",
    )
    b.panel(
        "timeseries",
        "API requests by model",
        [(f"sum by (model) (rate(claude_code_api_requests_total{sel()}[$__rate_interval]))", "{{model}}")],
        w=8,
        unit="reqps",
    )
    b.panel(
        "timeseries",
        "API errors by status code",
        [
            (f"sum by (status_code) (increase(claude_code_api_errors_total{sel()}[$__rate_interval]))", "{{status_code}}"),
            (f"sum(claude_code:api_error_ratio{sel()})", "error ratio (10m)"),
        ],
        w=8,
        desc="Final failed attempts (api_error events): 429 rate limit, 529 overload, 401 auth. ClaudeApiErrorsHigh at 20% of at least 5 requests.",
        overrides=[
            {
                "matcher": {"id": "byName", "options": "error ratio (10m)"},
                "properties": [
                    {"id": "unit", "value": "percentunit"},
                    {"id": "custom.axisPlacement", "value": "right"},
                ],
            }
        ],
    )

    b.row("Tools and decisions")
    b.panel(
        "bargauge",
        "Tool runs (range)",
        [(f"sum by (tool_name) (increase(claude_code_tool_results_total{sel()}[$__range]))", "{{tool_name}}")],
        w=6,
        h=8,
    )
    b.panel(
        "bargauge",
        "Tool success ratio (range)",
        [
            (
                f'sum by (tool_name) (increase(claude_code_tool_results_total{SUCCEEDED}[$__range])) / sum by (tool_name) (increase(claude_code_tool_results_total{sel()}[$__range]))',
                "{{tool_name}}",
            )
        ],
        w=6,
        h=8,
        unit="percentunit",
        defaults={"min": 0, "max": 1, "thresholds": thresholds((None, "red"), (0.8, "orange"), (0.95, "green"))},
    )
    b.panel(
        "timeseries",
        "Tool duration p90",
        [
            (
                f"histogram_quantile(0.9, sum by (le, tool_name) (rate(claude_code_tool_result_duration_seconds_bucket{sel()}[$__rate_interval])))",
                "{{tool_name}}",
            )
        ],
        w=6,
        h=8,
        unit="s",
    )
    b.panel(
        "bargauge",
        "Tool permission decisions (range)",
        [
            (
                f"sum by (decision, source) (increase(claude_code_tool_decisions_total{sel()}[$__range]))",
                "{{decision}} ({{source}})",
            )
        ],
        w=6,
        h=8,
    )
    b.panel(
        "bargauge",
        "Edit decisions (range)",
        [
            (
                f"sum by (decision, tool_name, language) (increase(claude_code_code_edit_tool_decision_total{sel()}[$__range]))",
                "{{decision}} {{tool_name}} {{language}}",
            )
        ],
        w=8,
        h=8,
        desc="Accept/reject decisions on Edit, Write and NotebookEdit (claude_code.code_edit_tool.decision).",
    )
    b.panel(
        "timeseries",
        "Lines of code",
        [
            (f"sum by (type) (claude_code:lines_cumulative_total{sel()})", "{{type}}"),
        ],
        w=8,
        h=8,
    )
    b.panel(
        "stat",
        "Commits, pull requests, prompts",
        [
            (f"sum(claude_code:commits_cumulative_total{sel()})", "commits"),
            (f"sum(claude_code_pull_request_count_total{sel()})", "pull requests"),
            (f"sum(increase(claude_code_user_prompts_total{sel()}[$__range]))", "prompts (range)"),
        ],
        w=8,
        h=8,
        options={"graphMode": "none", "textMode": "value_and_name"},
    )

    b.row("Per user (transcripts)")
    b.panel(
        "bargauge",
        "Cost by user (range)",
        [(f"sum by (user) (increase(vibe_claude_cost_usd_total{user}[$__range]))", "{{user}}")],
        w=8,
        unit="currencyUSD",
        desc="From ~/.claude/projects/**/*.jsonl of every configured home, priced at list price (vibe_claude_*).",
    )
    b.panel(
        "timeseries",
        "Tokens by user and type",
        [(f"sum by (user, type) (rate(vibe_claude_tokens_total{user}[$__rate_interval]))", "{{user}} {{type}}")],
        w=8,
    )
    b.panel(
        "timeseries",
        "Messages by user and model",
        [(f"sum by (user, model) (increase(vibe_claude_messages_total{user}[$__rate_interval]))", "{{user}} {{model}}")],
        w=8,
    )
    b.panel(
        "bargauge",
        "Tool uses (range)",
        [(f"sum by (tool) (increase(vibe_claude_tool_uses_total{user}[$__range]))", "{{tool}}")],
        w=8,
    )
    b.panel(
        "table",
        "Users",
        [
            (f"sum by (user) (vibe_claude_cost_usd_total{user})", ""),
            (f"sum by (user) (vibe_claude_sessions_total{user})", ""),
            (f"sum by (user) (vibe_claude_active_sessions{user})", ""),
            (f"sum by (user) (vibe_claude_prompts_total{user})", ""),
            (f"sum by (user) (vibe_claude_api_errors_total{user})", ""),
            (f"max by (user) (vibe_claude_last_activity_timestamp_seconds{user}) * 1000", ""),
        ],
        w=16,
        desc="Cumulative per user: cost, sessions, active sessions, prompts, API errors, last activity.",
        transformations=[
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True},
                    "renameByName": {
                        "Value #A": "cost (USD)",
                        "Value #B": "sessions",
                        "Value #C": "active",
                        "Value #D": "prompts",
                        "Value #E": "API errors",
                        "Value #F": "last activity",
                    },
                },
            },
        ],
        overrides=[
            {
                "matcher": {"id": "byName", "options": "last activity"},
                "properties": [{"id": "unit", "value": "dateTimeFromNow"}],
            },
            {
                "matcher": {"id": "byName", "options": "cost (USD)"},
                "properties": [{"id": "unit", "value": "currencyUSD"}],
            },
        ],
    )
    b.panel(
        "timeseries",
        "Current 5-hour block",
        [
            (f"sum by (user) (vibe_claude_block_cost_usd{user})", "{{user}} cost"),
        ],
        w=8,
        unit="currencyUSD",
        desc="Cost of the current 5-hour billing block (as ccusage's blocks).",
    )
    b.panel(
        "timeseries",
        "Block tokens and time left",
        [
            (f"sum by (user, type) (vibe_claude_block_tokens{user})", "{{user}} {{type}}"),
            (f"max by (user) (vibe_claude_block_end_timestamp_seconds{user}) - time()", "{{user}} seconds left"),
            (f"time() - max by (user) (vibe_claude_block_start_timestamp_seconds{user})", "{{user}} seconds in"),
            (f"sum by (user) (vibe_claude_block_projected_tokens{user})", "{{user}} projected tokens at the end"),
        ],
        w=8,
    )
    b.panel(
        "timeseries",
        "Today per user (transcripts)",
        [
            (f"sum by (user) (vibe_claude_today_cost_usd{user})", "{{user}} today"),
        ],
        w=8,
        unit="currencyUSD",
        desc="Cost since local midnight (the agent's otlp.time_zone), from transcripts, as ccusage daily shows today. ClaudeDailyBudgetExceeded fires above claude:daily_budget_usd (default 50).",
    )
    b.panel(
        "timeseries",
        "Block burn rate",
        [
            (f"sum by (user) (vibe_claude_block_burn_rate_usd_per_hour{user})", "{{user}} USD/h"),
            (f"sum by (user) (vibe_claude_block_burn_rate_tokens_per_minute{user})", "{{user}} tokens/min"),
        ],
        w=8,
        desc="The current 5-hour block's tokens and cost over the time from its first to its last response (ccusage's burnRate).",
        overrides=[
            {
                "matcher": {"id": "byRegexp", "options": ".*USD/h"},
                "properties": [{"id": "unit", "value": "currencyUSD"}],
            },
        ],
    )
    b.panel(
        "timeseries",
        "Block projection at its end",
        [
            (f"sum by (user) (vibe_claude_block_projected_cost_usd{user})", "{{user}} projected"),
            (f"sum by (user) (vibe_claude_block_cost_usd{user})", "{{user}} so far"),
        ],
        w=8,
        unit="currencyUSD",
        desc="Where the block ends at its burn rate (ccusage's projection). ClaudeBlockBudgetProjected fires above claude:block_budget_usd (default 20).",
    )
    b.panel(
        "timeseries",
        "Cost per project",
        [
            (f"sum by (user, project) (increase(vibe_claude_project_cost_usd_total{user}[$__rate_interval]))", "{{user}} {{project}}"),
        ],
        w=12,
        unit="currencyUSD",
        desc="Per project (the directory under ~/.claude/projects, as ccusage names it); beyond claude.max_projects the rest is \"other\".",
    )
    b.panel(
        "timeseries",
        "Tokens today and per project",
        [
            (f"sum by (user, type) (vibe_claude_today_tokens{user})", "{{user}} today {{type}}"),
            (f"sum by (user, project) (increase(vibe_claude_project_tokens_total{user}[$__rate_interval]))", "{{user}} {{project}}"),
        ],
        w=12,
        desc="Tokens since local midnight by type, and tokens per project over time.",
    )
    b.panel(
        "timeseries",
        "Responses per project, and beyond the project cap",
        [
            (f"sum by (user, project) (increase(vibe_claude_project_messages_total{user}[$__rate_interval]))", "{{user}} {{project}}"),
            (f"sum by (user) (increase(vibe_claude_project_overflow_messages_total{user}[$__rate_interval]))", "{{user}} counted as other"),
        ],
        w=12,
        desc="Deduplicated responses per project; \"counted as other\" grows when a user has more projects than claude.max_projects.",
    )
    b.panel(
        "bargauge",
        "Projects by cost (range)",
        [
            (f"topk(15, sum by (user, project) (increase(vibe_claude_project_cost_usd_total{user}[$__range])))", "{{user}} {{project}}"),
        ],
        w=12,
        unit="currencyUSD",
        desc="The projects that spent most in the time range.",
    )
    b.panel(
        "timeseries",
        "Unpriced messages and web searches",
        [
            (f"sum by (user, model) (increase(vibe_claude_unpriced_messages_total{user}[$__rate_interval]))", "{{user}} {{model}} unpriced"),
            (f"sum by (user) (increase(vibe_claude_web_search_requests_total{user}[$__rate_interval]))", "{{user}} web searches"),
        ],
        w=8,
        desc="Unpriced: the model has no price in the agent (set claude.prices), counted in tokens only.",
    )

    b.row("Telemetry vs transcripts")
    b.panel(
        "timeseries",
        "Cost: telemetry vs transcripts",
        [
            (f"sum(claude_code_cost_usage_USD_total{sel()})", "telemetry (claude_code_cost_usage_USD_total)"),
            (f"sum(vibe_claude_cost_usd_total{sel()})", "transcripts (vibe_claude_cost_usd_total)"),
        ],
        w=8,
        unit="currencyUSD",
        desc="Two views of the same spend. Transcripts cover every session; telemetry only those with it turned on.",
    )
    b.panel(
        "timeseries",
        "Coverage (range)",
        [
            (
                f"sum(increase(claude_code_cost_usage_USD_total{sel()}[$__range])) / sum(increase(vibe_claude_cost_usd_total{sel()}[$__range]))",
                "cost",
            ),
            (
                f"sum(increase(claude_code_token_usage_tokens_total{sel()}[$__range])) / sum(increase(vibe_claude_tokens_total{sel()}[$__range]))",
                "tokens",
            ),
            (
                f"sum(increase(claude_code_api_requests_total{sel()}[$__range])) / sum(increase(vibe_claude_messages_total{sel()}[$__range]))",
                "requests",
            ),
        ],
        w=8,
        unit="percentunit",
        desc="Telemetry over transcripts: near 100% when every session sends telemetry; low means sessions run without it (check settings.json's env block).",
    )
    b.panel(
        "timeseries",
        "Telemetry last received",
        [(f"time() - vibe_claude_telemetry_last_received_timestamp_seconds{sel()}", "{{signal}}")],
        w=8,
        unit="s",
    )
    b.panel(
        "timeseries",
        "OTLP requests",
        [
            (f"sum by (path, status) (rate(vibe_otlp_requests_total{sel()}[$__rate_interval]))", "{{path}} {{status}}"),
            (f"sum by (reason) (rate(vibe_otlp_decode_errors_total{sel()}[$__rate_interval]))", "decode error: {{reason}}"),
        ],
        w=8,
        unit="reqps",
    )
    b.panel(
        "timeseries",
        "OTLP points and bytes",
        [
            (f"sum by (signal) (rate(vibe_otlp_points_accepted_total{sel()}[$__rate_interval]))", "{{signal}} points"),
            (f"sum by (signal) (rate(vibe_otlp_received_bytes_total{sel()}[$__rate_interval]))", "{{signal}} bytes"),
            (f"sum(vibe_otlp_streams{sel()})", "streams tracked"),
            (f"sum(increase(vibe_otlp_streams_evicted_total{sel()}[$__rate_interval]))", "streams evicted"),
        ],
        w=8,
    )
    b.panel(
        "timeseries",
        "Forwarding upstream",
        [
            (f"sum by (signal) (rate(vibe_otlp_forwarded_total{sel()}[$__rate_interval]))", "{{signal}} forwarded"),
            (f"sum by (signal) (rate(vibe_otlp_forward_retries_total{sel()}[$__rate_interval]))", "{{signal}} retries"),
            (f"sum by (signal) (vibe_otlp_forward_queue_bytes{sel()})", "{{signal}} queued bytes"),
        ],
        w=8,
    )
    b.panel(
        "timeseries",
        "Transcript reading",
        [
            (f"sum(rate(vibe_claude_transcript_lines_read_total{sel()}[$__rate_interval]))", "lines read"),
            (f"sum by (reason) (rate(vibe_claude_transcript_lines_skipped_total{sel()}[$__rate_interval]))", "skipped: {{reason}}"),
            (f"sum(rate(vibe_claude_transcript_bytes_read_total{sel()}[$__rate_interval]))", "bytes read"),
            (f"sum(increase(vibe_claude_transcript_watch_errors_total{sel()}[$__rate_interval]))", "watch errors"),
        ],
        w=12,
    )
    b.panel(
        "stat",
        "Transcripts watched",
        [
            (f"sum(vibe_claude_transcript_homes{sel()})", "homes"),
            (f"sum(vibe_claude_transcript_files_watched{sel()})", "files"),
            (f"sum(vibe_claude_transcript_dedupe_keys{sel()})", "dedupe keys"),
        ],
        w=12,
        options={"graphMode": "none", "textMode": "value_and_name"},
    )
    users = query_var(
        "user",
        "User (transcripts)",
        'label_values(vibe_claude_messages_total{ins=~"$ins", instance=~"$instance"}, user)',
    )
    return dashboard(
        "vibe-claude-code",
        "Claude Code",
        ["vibe", "vibe-agent", "claude-code"],
        b,
        variables([users]),
        "Claude Code on VIBE boxes: OpenTelemetry received by vibe-agent (claude_code_*) and transcript accounting (vibe_claude_*).",
    )


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    for name, build in (("vibe-services.json", services), ("vibe-claude-code.json", claude)):
        path = os.path.join(here, name)
        with open(path, "w") as f:
            json.dump(build(), f, indent=2, ensure_ascii=False)
            f.write("\n")
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
