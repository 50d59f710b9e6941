#!/usr/bin/env python3
"""Generate the CRDs from runnerd.api and the Kubernetes OpenAPI.

    .venv/bin/python hack/gen_crds.py            # write both charts' crds/ directories
    .venv/bin/python hack/gen_crds.py --check    # exit 1 if the committed files are stale

actions.summerwind.dev (legacy) and runnerd.dev (runnerd's own kinds: RunnerSizingPolicy) go to
charts/actions-runner-controller/crds/, actions.github.com (scale sets, runnerd.api.scaleset) to
charts/gha-runner-scale-set-controller/crds/.

The Kubernetes OpenAPI v3 documents come from the pinned Go module k8s.io/kubernetes (located with
``go mod download -json``; the module is already in the Go module cache when the Kubernetes
binaries were built). Set RUNNERD_K8S_OPENAPI_DIR to a directory holding
``api__v1_openapi.json`` and ``apis__apps__v1_openapi.json`` to skip Go.

This file is the thin I/O shell; the schema building is pure (runnerd.api.crds).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from runnerd.api import constants, sizing  # noqa: E402
from runnerd.api.crds import build_crds, build_group_crds, crd_sizes, crd_to_yaml  # noqa: E402
from runnerd.api.scaleset import GROUP as SCALE_SET_GROUP  # noqa: E402
from runnerd.api.scaleset import build_scale_set_crds  # noqa: E402

CRD_DIR = REPO / "charts" / "actions-runner-controller" / "crds"
SCALE_SET_CRD_DIR = REPO / "charts" / "gha-runner-scale-set-controller" / "crds"
OPENAPI_FILES = ("api__v1_openapi.json", "apis__apps__v1_openapi.json")
ENV_DIR = "RUNNERD_K8S_OPENAPI_DIR"
LAST_APPLIED_LIMIT = 262144


class OpenAPINotFound(RuntimeError):
    """The Kubernetes OpenAPI documents could not be located."""


def locate_openapi_dir() -> Path:
    """Directory of the Kubernetes OpenAPI v3 documents for the pinned k8s.io/kubernetes version."""
    override = os.environ.get(ENV_DIR)
    if override:
        return Path(override)
    module = f"{constants.K8S_OPENAPI_MODULE}@{constants.K8S_OPENAPI_VERSION}"
    go = shutil.which("go")
    if go is None:
        raise OpenAPINotFound(f"go is not on PATH: cannot locate {module} (or set {ENV_DIR})")
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
    # Run outside any Go module so that no go.mod nearby changes what is resolved.
    with tempfile.TemporaryDirectory() as cwd:
        proc = subprocess.run(
            [go, "mod", "download", "-json", module],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    if proc.returncode != 0:
        raise OpenAPINotFound(
            f"go mod download {module} failed: {(proc.stdout + proc.stderr).strip()[-2000:]}"
        )
    info = json.loads(proc.stdout)
    if not info.get("Dir"):
        raise OpenAPINotFound(f"go mod download {module} reported no Dir: {info.get('Error', proc.stdout)}")
    return Path(info["Dir"]) / "api" / "openapi-spec" / "v3"


def load_openapi(directory: Path | None = None) -> list[dict[str, Any]]:
    """The Kubernetes OpenAPI documents the CRDs are built from (core/v1 and apps/v1)."""
    directory = directory or locate_openapi_dir()
    docs = []
    for name in OPENAPI_FILES:
        path = directory / name
        if not path.is_file():
            raise OpenAPINotFound(f"{path} does not exist")
        docs.append(json.loads(path.read_text()))
    return docs


def build_runnerd_crds(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The runnerd.dev CRDs (shipped next to the legacy ones, in the same chart)."""
    return build_group_crds(docs, sizing.RESOURCES, sizing.GROUP)


def rendered_crds(docs: list[dict[str, Any]] | None = None) -> dict[str, str]:
    """File name -> YAML text of every CRD of the legacy chart (actions.summerwind.dev and
    runnerd.dev), as this script writes them."""
    docs = docs if docs is not None else load_openapi()
    crds = build_crds(docs) | build_runnerd_crds(docs)
    return {name: crd_to_yaml(crd) for name, crd in crds.items()}


def rendered_scale_set_crds(docs: list[dict[str, Any]] | None = None) -> dict[str, str]:
    """File name -> YAML text of every scale-set CRD, as this script writes them."""
    crds = build_scale_set_crds(docs if docs is not None else load_openapi())
    return {name: crd_to_yaml(crd) for name, crd in crds.items()}


def sync(crds: dict[str, dict[str, Any]], out: Path, group: str, check: bool) -> list[str]:
    """Write (or, with ``check``, compare) one group's CRDs in ``out``; the stale/extra file names."""
    stale = []
    for name, crd in crds.items():
        text = crd_to_yaml(crd)
        path = out / name
        yaml_bytes, json_bytes = crd_sizes(crd)
        note = "" if json_bytes < LAST_APPLIED_LIMIT else "  (too big for client-side kubectl apply)"
        if check:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
            continue
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(
            f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}: "
            f"{yaml_bytes} bytes YAML, {json_bytes} bytes compact JSON{note}"
        )
    extra = sorted(p.name for p in out.glob(f"{group}_*.yaml") if p.name not in crds)
    if check:
        return stale + extra
    for name in extra:
        (out / name).unlink()
        print(f"removed {name}")
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="fail if the committed CRDs are stale")
    parser.add_argument(
        "--out", type=Path, default=CRD_DIR, help=f"legacy CRDs' directory (default {CRD_DIR})"
    )
    parser.add_argument(
        "--scale-set-out",
        type=Path,
        default=SCALE_SET_CRD_DIR,
        help=f"scale-set CRDs' directory (default {SCALE_SET_CRD_DIR})",
    )
    args = parser.parse_args(argv)

    docs = load_openapi()
    stale = sync(build_crds(docs), args.out, constants.GROUP, args.check)
    stale += sync(build_runnerd_crds(docs), args.out, sizing.GROUP, args.check)
    stale += sync(build_scale_set_crds(docs), args.scale_set_out, SCALE_SET_GROUP, args.check)
    if args.check:
        if stale:
            print(f"stale CRDs: {', '.join(stale)}; run .venv/bin/python hack/gen_crds.py", file=sys.stderr)
            return 1
        print("CRDs are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
