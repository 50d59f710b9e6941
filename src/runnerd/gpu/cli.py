"""``runnerd-gpu-setup``: the command line.

    runnerd-gpu-setup                 write $RUNNERD_CDI_SPEC_DIR/nvidia.yaml; print the extra dockerd
                                      arguments CDI needs (if any) on stdout, a log on stderr
    runnerd-gpu-setup --check         explain what was found and what is missing (exit 1 if unusable)
    runnerd-gpu-setup --docker-flags  print `docker run` flags equivalent to --device nvidia.com/gpu=all
    runnerd-gpu-setup --print-spec    print the CDI spec instead of writing it

Exit status: 0 done; 1 GPU setup failed (nothing written; dockerd still starts, CPU jobs work);
2 usage; 3 the spec was written but this Docker cannot read CDI specs (flags printed on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import TextIO

from runnerd.gpu import cdi, dockerd
from runnerd.gpu.discover import discover
from runnerd.gpu.inventory import (
    ALL_CAPABILITIES,
    DEFAULT_CAPABILITIES,
    DRIVER_ROOTS,
    Config,
    Inventory,
    Tree,
)

PROG = "runnerd-gpu-setup"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_CDI = 0, 1, 2, 3
DEFAULT_CDI_DIR = "/etc/cdi"
DEFAULT_DAEMON_JSON = "/etc/docker/daemon.json"
TOOLS_DIR = "/runnerd/bin"  # runnerd.manifests.gpu.TOOLS_DIR: first on the sidecar dockerd's PATH


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Find the NVIDIA GPUs, device nodes, driver libraries and binaries the node's runtime gave "
            "this container and write a CDI spec so that `docker run --gpus all` and "
            "`docker run --device nvidia.com/gpu=all` work for containers of the dockerd that starts next."
        ),
        epilog="Exit status: 0 done, 1 GPU setup failed, 2 usage, 3 spec written but Docker has no CDI.",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="report what is found and missing; write nothing")
    mode.add_argument("--docker-flags", action="store_true", help="print equivalent `docker run` flags")
    mode.add_argument("--print-spec", action="store_true", help="print the CDI spec instead of writing it")
    p.add_argument("--json", action="store_true", help="with --check: the findings as JSON")
    p.add_argument("--root", default="/", help="read (and write) everything below this directory (tests)")
    p.add_argument(
        "--driver-root",
        action="append",
        default=None,
        metavar="DIR",
        help="where driver files may live, repeatable (default: / , $NVIDIA_DRIVER_ROOT, /run/nvidia/driver)",
    )
    p.add_argument(
        "--library-dir", action="append", default=[], metavar="DIR", help="extra library directory"
    )
    p.add_argument(
        "--cdi-dir", default=None, help="spec directory (default: $RUNNERD_CDI_SPEC_DIR or /etc/cdi)"
    )
    p.add_argument(
        "--devices",
        default=None,
        help="GPUs to expose: UUIDs or indices, comma-separated, or 'all' (default: $RUNNERD_GPU_DEVICES, "
        "else $NVIDIA_VISIBLE_DEVICES)",
    )
    p.add_argument("--count", type=int, default=None, help="GPUs allocated (default: $RUNNERD_GPU_COUNT)")
    p.add_argument(
        "--capabilities",
        default=None,
        help="driver capabilities (default: $NVIDIA_DRIVER_CAPABILITIES, else compute,utility)",
    )
    p.add_argument(
        "--enable-cdi",
        choices=("auto", "flag", "daemon-json", "none"),
        default="auto",
        help="how to turn CDI on in dockerd < 28.2 (default auto: --feature flag, else daemon.json)",
    )
    p.add_argument("--daemon-json", default=DEFAULT_DAEMON_JSON, help="dockerd's config file")
    p.add_argument("--dockerd", default=None, help="the dockerd executable to ask for its version")
    p.add_argument("--docker-version", default=None, help="skip asking dockerd: use this version (e.g. 27.5)")
    p.add_argument(
        "--docker-feature-flag",
        choices=("yes", "no"),
        default=None,
        help="with --docker-version: whether that dockerd has --feature",
    )
    p.add_argument(
        "--hook-dir",
        default=None,
        help=f"where to put the nvidia-cdi-hook placeholder that lets --gpus use CDI (default: {TOOLS_DIR} "
        "when it exists and no real nvidia-cdi-hook is on PATH)",
    )
    p.add_argument("--no-hook-placeholder", action="store_true", help="never write the placeholder")
    p.add_argument(
        "--ldcache-hook",
        choices=("auto", "never"),
        default="auto",
        help="add NVIDIA's update-ldcache hook when a real nvidia-cdi-hook exists (default auto)",
    )
    return p


def config_from(args: argparse.Namespace, env: dict[str, str], log: TextIO) -> Config:
    caps_text = args.capabilities or env.get("NVIDIA_DRIVER_CAPABILITIES") or ",".join(DEFAULT_CAPABILITIES)
    caps = tuple(c.strip() for c in caps_text.split(",") if c.strip())
    unknown = [c for c in caps if c not in (*ALL_CAPABILITIES, "all")]
    if unknown:
        print(f"{PROG}: ignoring unknown driver capabilities: {', '.join(unknown)}", file=log)
    caps = tuple(c for c in caps if c not in unknown) or DEFAULT_CAPABILITIES

    count = args.count
    if count is None and env.get("RUNNERD_GPU_COUNT"):
        try:
            count = int(env["RUNNERD_GPU_COUNT"])
        except ValueError:
            print(f"{PROG}: RUNNERD_GPU_COUNT={env['RUNNERD_GPU_COUNT']!r} is not a whole number", file=log)

    roots = args.driver_root
    if roots is None:
        roots = ["/"]
        if env.get("NVIDIA_DRIVER_ROOT"):
            roots.append(env["NVIDIA_DRIVER_ROOT"])
        roots += [r for r in DRIVER_ROOTS if r not in roots]
    return Config(
        root=args.root,
        driver_roots=tuple(roots),
        capabilities=caps,
        visible_devices=env.get("NVIDIA_VISIBLE_DEVICES"),
        requested_devices=args.devices if args.devices is not None else env.get("RUNNERD_GPU_DEVICES"),
        expected_count=count,
        extra_library_dirs=tuple(args.library_dir),
    )


def main(
    argv: Sequence[str] | None = None,
    *,
    env: dict[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    out = stdout or sys.stdout
    log = stderr or sys.stderr
    environ = dict(os.environ if env is None else env)
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:
        return EXIT_USAGE if e.code else EXIT_OK
    config = config_from(args, environ, log)
    inv = discover(config)
    tree = Tree(config.root)

    if args.check:
        info = _docker_info(args, tree)
        plan = dockerd.plan_cdi(info, mode=args.enable_cdi)
        if args.json:
            json.dump(_as_json(inv, plan), out, indent=2, sort_keys=True)
            out.write("\n")
        else:
            out.write(report(inv, plan, spec_path=_spec_path(args, environ)))
        return EXIT_OK if inv.ok else EXIT_FAILED

    if not inv.ok:
        for line in report(inv, None).splitlines():
            print(f"{PROG}: {line}", file=log)
        print(f"{PROG}: GPU setup failed; job containers will get no GPU", file=log)
        return EXIT_FAILED

    if args.docker_flags:
        out.write(cdi.shell_line(cdi.docker_run_flags(inv)) + "\n")
        return EXIT_OK

    hook = _real_hook(tree, environ) if args.ldcache_hook == "auto" else None
    spec = cdi.build_spec(inv, ldcache_hook=hook)
    text = cdi.render(spec, header=_header(inv))
    if args.print_spec:
        out.write(text)
        return EXIT_OK

    path = _spec_path(args, environ)
    _write(tree.fs(path), text)
    print(
        f"{PROG}: wrote {path}: devices {', '.join(cdi.device_names(inv))} of kind {cdi.CDI_KIND}", file=log
    )
    for line in _summary(inv):
        print(f"{PROG}: {line}", file=log)

    if not args.no_hook_placeholder and hook is None and _real_hook(tree, environ) is None:
        _place_hook_placeholder(args.hook_dir, tree, log)

    info = _docker_info(args, tree)
    plan = dockerd.plan_cdi(info, mode=args.enable_cdi)
    for note in plan.notes:
        print(f"{PROG}: {note}", file=log)
    if plan.daemon_json is not None:
        dockerd.write_daemon_json(tree.fs(args.daemon_json), plan.daemon_json)
        print(f"{PROG}: wrote features.cdi=true to {args.daemon_json}", file=log)
    if not plan.cdi:
        print(f"{PROG}: this dockerd cannot use the spec; the equivalent `docker run` flags are:", file=log)
        print(cdi.shell_line(cdi.docker_run_flags(inv)), file=log)
        return EXIT_NO_CDI
    if plan.args:
        out.write(" ".join(plan.args) + "\n")
    return EXIT_OK


def _place_hook_placeholder(hook_dir: str | None, tree: Tree, log: TextIO) -> None:
    """Install the nvidia-cdi-hook placeholder (``--hook-dir``, else the tools dir when it exists) so
    ``docker run --gpus`` uses the spec; without a place for it, say what works instead."""
    hook_dir = hook_dir or (TOOLS_DIR if tree.isdir(TOOLS_DIR) else None)
    if hook_dir is not None:
        dockerd.install_placeholder(tree.fs(hook_dir))
        print(
            f"{PROG}: {hook_dir}/{dockerd.HOOK_NAME} placeholder: `docker run --gpus` uses the spec",
            file=log,
        )
    else:
        print(
            f"{PROG}: no nvidia-cdi-hook on PATH: use `docker run --device {cdi.CDI_KIND}=all` "
            "(`--gpus` needs it)",
            file=log,
        )


def _spec_path(args: argparse.Namespace, env: dict[str, str]) -> str:
    directory = args.cdi_dir or env.get("RUNNERD_CDI_SPEC_DIR") or DEFAULT_CDI_DIR
    return os.path.join(directory, cdi.SPEC_FILE)


def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".runnerd-tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _real_hook(tree: Tree, env: dict[str, str]) -> str | None:
    """NVIDIA's nvidia-cdi-hook on PATH, as a path seen from the root."""
    dirs = [d for d in env.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(os.pathsep) if d.startswith("/")]
    found = dockerd.real_hook(os.pathsep.join(tree.fs(d) for d in dirs))
    if found is None:
        return None
    for d in dirs:
        if os.path.dirname(found) == tree.fs(d).rstrip("/"):
            return os.path.join(d, dockerd.HOOK_NAME)
    return None


def _docker_info(args: argparse.Namespace, tree: Tree) -> dockerd.DockerInfo:
    if args.docker_version is not None:
        content, error = dockerd.read_daemon_json(tree.fs(args.daemon_json))
        return dockerd.DockerInfo(
            version=dockerd.parse_version("version " + args.docker_version),
            has_feature_flag=args.docker_feature_flag == "yes",
            daemon_json=content,
            daemon_json_error=error,
        )
    if args.dockerd is None and tree.root != "/":
        # A test tree: never ask this machine's dockerd about a fake root.
        content, error = dockerd.read_daemon_json(tree.fs(args.daemon_json))
        return dockerd.DockerInfo(
            version=None, has_feature_flag=False, daemon_json=content, daemon_json_error=error
        )
    return dockerd.probe(args.dockerd, tree.fs(args.daemon_json))


def _header(inv: Inventory) -> str:
    lines = [
        f"Generated by {PROG} (runnerd) for the GPUs allocated to this container; rewritten at every start.",
        f"Driver {inv.driver_version or 'unknown'}; GPUs: "
        + (", ".join(f"{g.node} {g.uuid or ''}".strip() for g in inv.selected) or "none"),
        f"Selected by {inv.selection_source}.",
    ]
    return "\n".join(lines)


def _summary(inv: Inventory) -> list[str]:
    real = [m for m in inv.libraries if not m.alias]
    lines = [
        f"driver {inv.driver_version or 'unknown'}; {len(inv.selected)} of {len(inv.gpus)} GPU(s) exposed "
        f"({inv.selection_source})",
        f"{len(inv.control_nodes)} control node(s), {len(real)} libraries "
        f"(+{len(inv.libraries) - len(real)} SONAME/dev-name mounts), {len(inv.binaries)} binaries",
    ]
    lines += [f"warning: {w}" for w in inv.warnings]
    return lines


def report(inv: Inventory, plan: dockerd.CdiPlan | None, *, spec_path: str | None = None) -> str:
    """The human-readable explanation printed by --check (and, on failure, to the log)."""
    lines: list[str] = []
    cfg = inv.config
    lines.append(f"root {cfg.root}; capabilities {','.join(cfg.capabilities)}")
    lines.append(
        f"driver version: {inv.driver_version or 'unknown'}"
        + (f" (from {inv.driver_version_source})" if inv.driver_version_source else "")
    )
    lines.append(f"GPUs seen: {len(inv.gpus)}" + (f"; exposed: {len(inv.selected)}" if inv.selected else ""))
    for g in inv.gpus:
        mark = "*" if g in inv.selected else " "
        desc = ", ".join(x for x in (g.model, g.uuid, g.bus_id) if x)
        lines.append(f"  {mark} {g.index}: {g.node}" + (f" ({desc})" if desc else ""))
        lines += [f"      {n}" for n in g.extra_nodes]
    if inv.selection_source:
        lines.append(f"  selected by {inv.selection_source}")
    lines.append("control nodes: " + (", ".join(inv.control_nodes) or "none"))
    real = [m for m in inv.libraries if not m.alias]
    lines.append(f"libraries: {len(real)} found")
    for m in real:
        aliases = [os.path.basename(a.container_path) for a in inv.libraries if a.alias and a.path == m.path]
        where = m.path if m.path == m.container_path else f"{m.path} -> {m.container_path}"
        lines.append(f"  {where}" + (f" (also as {', '.join(aliases)})" if aliases else ""))
    if inv.missing_libraries:
        lines.append(f"  not found: {', '.join(inv.missing_libraries)}")
    lines.append(f"  searched: {', '.join(inv.library_dirs_searched) or 'no existing directory'}")
    lines.append("binaries: " + (", ".join(m.container_path for m in inv.binaries) or "none"))
    if inv.missing_binaries:
        lines.append(f"  not found: {', '.join(inv.missing_binaries)}")
    if plan is not None:
        lines.append(
            "docker: "
            + "; ".join(plan.notes)
            + (f" (extra dockerd args: {' '.join(plan.args)})" if plan.args else "")
        )
    if spec_path is not None:
        lines.append(f"CDI spec: {spec_path}")
    for f in inv.findings:
        if f.severity != "info" or not inv.ok:
            lines.append(f"{f.severity.upper()}: {f.message}")
    lines.append("result: " + ("OK" if inv.ok else f"NOT USABLE ({len(inv.errors)} error(s))"))
    return "\n".join(lines) + "\n"


def _as_json(inv: Inventory, plan: dockerd.CdiPlan) -> dict[str, object]:
    return {
        "ok": inv.ok,
        "driver_version": inv.driver_version,
        "gpus": [asdict(g) for g in inv.gpus],
        "selected": [g.index for g in inv.selected],
        "selection_source": inv.selection_source,
        "control_nodes": inv.control_nodes,
        "libraries": [asdict(m) for m in inv.libraries],
        "binaries": [asdict(m) for m in inv.binaries],
        "missing_libraries": inv.missing_libraries,
        "missing_binaries": inv.missing_binaries,
        "library_dirs_searched": inv.library_dirs_searched,
        "findings": [asdict(f) for f in inv.findings],
        "docker": {"cdi": plan.cdi, "args": plan.args, "notes": plan.notes},
    }


def entrypoint() -> None:
    sys.exit(main())
