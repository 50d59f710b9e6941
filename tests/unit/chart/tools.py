"""The operations kit's checkers for tests: promtool, actionlint and kubeconform (built from Go modules by
hack/build-tools.sh, a warm cache is instant), the kubeconform schemas (hack/gen_kube_schemas.py),
helm rendering, and what a PromQL expression or a ``/metrics`` page names."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from devcluster import binaries

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "actions-runner-controller"
DASHBOARD = CHART / "dashboards" / "runnerd.json"


class ToolsError(RuntimeError):
    """A checker is missing or could not be built."""


def _last_line(argv: list[str], what: str) -> Path:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=REPO, timeout=1800)
    if proc.returncode != 0 or not proc.stdout.strip():
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise ToolsError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return Path(proc.stdout.strip().splitlines()[-1])


@functools.cache
def tool_dir() -> Path:
    """promtool, actionlint and kubeconform (``RUNNERD_TOOLS_DIR`` points at an existing directory)."""
    override = os.environ.get("RUNNERD_TOOLS_DIR")
    path = Path(override) if override else _last_line(["bash", "hack/build-tools.sh"], "hack/build-tools.sh")
    missing = [t for t in ("promtool", "actionlint", "kubeconform") if not (path / t).is_file()]
    if missing:
        raise ToolsError(f"{path} lacks {', '.join(missing)}: run hack/build-tools.sh (make tools)")
    return path


@functools.cache
def schema_dir() -> Path:
    """Kubernetes 1.36, runnerd CRD and monitoring.coreos.com schemas in kubeconform's layout."""
    return _last_line([sys.executable, "hack/gen_kube_schemas.py"], "hack/gen_kube_schemas.py")


def run(argv: Iterable[str | Path], *, cwd: Path | None = None, timeout: float = 60) -> str:
    """Run a checker; its combined output, or an assertion error that shows it."""
    proc = subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        timeout=timeout,
        env={"HOME": str(cwd or REPO), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, f"{' '.join(map(str, argv))}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def helm() -> Path:
    return binaries.ensure().path("helm")


def render(tmp: Path, values: Mapping[str, Any] | None = None, *args: str) -> list[dict[str, Any]]:
    """``helm template`` of the chart with a values file; the objects."""
    path = tmp / "values.yaml"
    path.write_text(yaml.safe_dump(dict(values or {})))
    text = run([helm(), "template", "rel", CHART, "--namespace", "arc", "-f", path, *args], cwd=tmp)
    return [d for d in yaml.load_all(text, Loader=yaml.CSafeLoader) if d]


# --- PromQL and the exposition format -----------------------------------------------------------------

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool"}
_KEYWORDS |= {"offset", "atan2", "inf", "nan"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*")
_LABEL_VALUES = re.compile(r"label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (or a Grafana ``label_values(...)`` query) selects."""
    found = set(_LABEL_VALUES.findall(expr))
    text = _STRING.sub('""', re.sub(r"label_values\([^)]*\)", " ", expr))
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges, Grafana's $__rate_interval among them
    text = _GROUPING.sub(" ", text)
    for m in _IDENT.finditer(text):
        word = m.group(0)
        if word.lower() in _KEYWORDS or text[m.end() :].lstrip().startswith("("):
            continue  # a keyword or a function
        found.add(word)
    return found


_SUFFIXES = {
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "counter": ("", "_created"),
    "gauge": ("",),
    "untyped": ("",),
}


def exposed_names(exposition: str) -> set[str]:
    """Every series name a ``/metrics`` page can carry (from its ``# TYPE`` lines, samples or not)."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            if kind == "counter" and name.endswith("_total"):
                names.add(name[: -len("_total")] + "_created")
            names |= {name + suffix for suffix in _SUFFIXES[kind]}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def dashboard_queries(dashboard: Mapping[str, Any]) -> list[str]:
    """Every PromQL expression of a Grafana dashboard: its panels' targets and its variables' queries."""
    exprs: list[str] = []

    def walk(panels: Iterable[Mapping[str, Any]]) -> None:
        for panel in panels:
            exprs.extend(t["expr"] for t in panel.get("targets") or () if t.get("expr"))
            walk(panel.get("panels") or ())

    walk(dashboard.get("panels") or ())
    for var in (dashboard.get("templating") or {}).get("list") or ():
        query = var.get("query")
        if var.get("type") == "query":
            exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


def rule_exprs(rule_groups: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Alert (or record) name -> expression of prometheus rule groups."""
    return {r.get("alert") or r["record"]: r["expr"] for g in rule_groups for r in g["rules"]}
