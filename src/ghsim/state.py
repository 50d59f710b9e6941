"""Seed documents: build a world from JSON/YAML, and write a world's setup back out.

A seed has optional lists ``enterprises``, ``orgs``, ``repos``, ``runner_groups``, ``apps``,
``installations``, ``pats``, ``hooks``, ``runs`` and an optional ``config`` object; each item has
the same shape as the body of the matching ``POST /_sim/...`` call (see docs/ghsim.md).  The export
(:func:`export_seed`) covers the setup (accounts, groups, credentials, hooks, settings), not
runners or jobs, so a saved state file brings back a simulator a controller can talk to again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .auth import load_public_key
from .entities import Scope
from .errors import ValidationFailed
from .model import JobSpec, World

JSON = dict[str, Any]


def generate_app_key() -> tuple[str, str]:
    """A fresh RSA key pair for a GitHub App: (private PEM, public PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def _str(item: JSON, key: str, *, required: bool = True) -> str | None:
    value = item.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ValidationFailed(f"{key} must be a non-empty string")
    return value


def _strs(item: JSON, key: str) -> list[str] | None:
    value = item.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ValidationFailed(f"{key} must be a list of strings")
    return list(value)


def _perms(item: JSON) -> dict[str, str] | None:
    value = item.get("permissions")
    if value is None:
        return None
    if not isinstance(value, dict) or not all(v in ("read", "write") for v in value.values()):
        raise ValidationFailed("permissions maps names to read or write")
    return {str(k): str(v) for k, v in value.items()}


def scope_of(item: JSON) -> Scope:
    """The scope named by exactly one of ``repo``, ``org``, ``enterprise`` in ``item``."""
    named = [k for k in ("repo", "org", "enterprise") if item.get(k)]
    if len(named) != 1:
        raise ValidationFailed("name exactly one of repo, org, enterprise")
    kind = named[0]
    value = item[kind]
    if not isinstance(value, str):
        raise ValidationFailed(f"{kind} must be a string")
    return Scope(kind, value)  # type: ignore[arg-type]


# ---- one item of each kind (shared with the admin API) ---------------------------------------


def add_enterprise(world: World, item: JSON) -> JSON:
    ent = world.create_enterprise(_str(item, "slug") or "", _str(item, "name", required=False))
    return {"id": ent.id, "slug": ent.slug, "name": ent.name}


def add_org(world: World, item: JSON) -> JSON:
    org = world.create_org(
        _str(item, "login") or "",
        _str(item, "enterprise", required=False),
        _str(item, "description", required=False),
    )
    return {"id": org.id, "login": org.login, "enterprise": org.enterprise}


def add_repo(world: World, item: JSON) -> JSON:
    full = item.get("full_name")
    if isinstance(full, str) and "/" in full:
        owner, _, name = full.partition("/")
    else:
        owner, name = _str(item, "owner") or "", _str(item, "name") or ""
    private = item.get("private", True)
    if not isinstance(private, bool):
        raise ValidationFailed("private must be a boolean")
    repo = world.create_repo(owner, name, private)
    return {"id": repo.id, "full_name": repo.full_name, "private": repo.private}


def add_runner_group(world: World, item: JSON) -> JSON:
    scope = scope_of({k: item.get(k) for k in ("org", "enterprise")})
    visibility = item.get("visibility", "all")
    public = item.get("allows_public_repositories", False)
    if not isinstance(public, bool):
        raise ValidationFailed("allows_public_repositories must be a boolean")
    group = world.create_group(
        scope,
        _str(item, "name") or "",
        visibility=visibility,
        allows_public_repositories=public,
        selected_repositories=_strs(item, "selected_repositories") or (),
        selected_organizations=_strs(item, "selected_organizations") or (),
    )
    return {"id": group.id, "name": group.name, "scope": str(group.scope), "visibility": group.visibility}


def add_app(world: World, item: JSON) -> JSON:
    public = _str(item, "public_key_pem", required=False)
    private: str | None = None
    if public is None:
        private, public = generate_app_key()
    load_public_key(public)
    ident = item.get("id")
    if ident is not None and (not isinstance(ident, int) or isinstance(ident, bool)):
        raise ValidationFailed("id must be an integer")
    app = world.create_app(
        _str(item, "slug") or "",
        public,
        name=_str(item, "name", required=False),
        owner=_str(item, "owner", required=False) or "octo-org",
        permissions=_perms(item),
        ident=ident,
    )
    out: JSON = {"id": app.id, "slug": app.slug, "client_id": app.client_id, "permissions": app.permissions}
    if private is not None:
        out["private_key_pem"] = private
    return out


def add_installation(world: World, item: JSON) -> JSON:
    app_id = item.get("app_id")
    if app_id is None and isinstance(item.get("app"), str):
        app_id = next((a.id for a in world.apps.values() if a.slug == item["app"]), None)
    if not isinstance(app_id, int):
        raise ValidationFailed("app_id (or app slug) is required")
    ident = item.get("id")
    if ident is not None and (not isinstance(ident, int) or isinstance(ident, bool)):
        raise ValidationFailed("id must be an integer")
    inst = world.create_installation(
        app_id,
        _str(item, "account") or "",
        repositories=_strs(item, "repositories"),
        permissions=_perms(item),
        ident=ident,
    )
    return {
        "id": inst.id,
        "app_id": inst.app_id,
        "account": inst.account,
        "repository_selection": inst.repository_selection,
        "permissions": inst.permissions,
    }


def add_pat(world: World, item: JSON) -> JSON:
    scopes = _strs(item, "scopes")
    expires_in = item.get("expires_in")
    if expires_in is not None and (isinstance(expires_in, bool) or not isinstance(expires_in, int | float)):
        raise ValidationFailed("expires_in must be a number of seconds")
    kwargs: dict[str, Any] = {}
    if scopes is not None:
        kwargs["scopes"] = scopes
    pat = world.create_pat(
        _str(item, "login", required=False) or "octocat",
        token=_str(item, "token", required=False),
        expires_in=expires_in,
        orgs=_strs(item, "orgs"),
        repos=_strs(item, "repos"),
        enterprises=_strs(item, "enterprises"),
        **kwargs,
    )
    return {
        "id": pat.id,
        "token": pat.token,
        "login": pat.login,
        "scopes": list(pat.scopes),
        "principal": f"pat:{pat.id}",
    }


def add_hook(world: World, item: JSON) -> JSON:
    app_id = item.get("app_id")
    if app_id is not None and not isinstance(app_id, int):
        raise ValidationFailed("app_id must be an integer")
    scope = None if app_id is not None else scope_of(item)
    faults = item.get("faults")
    if faults is not None and not isinstance(faults, dict):
        raise ValidationFailed("faults must be an object")
    hook = world.create_hook(
        _str(item, "url") or "",
        scope=world.scope_exists(scope) if scope is not None else None,
        app_id=app_id,
        secret=_str(item, "secret", required=False),
        events=_strs(item, "events") or ["workflow_job"],
        faults=faults,
    )
    return hook_json(world, hook.id)


def hook_json(world: World, hook_id: int) -> JSON:
    hook = world.hooks[hook_id]
    return {
        "id": hook.id,
        "url": hook.url,
        "scope": str(hook.scope) if hook.scope else None,
        "app_id": hook.app_id,
        "events": hook.events,
        "active": hook.active,
        "faults": {
            "drop": hook.drop,
            "duplicate": hook.duplicate,
            "reorder": hook.reorder,
            "delay_s": hook.delay_s,
            "fail": hook.fail,
            "seed": hook.seed,
        },
    }


def job_spec(item: Any) -> JobSpec:
    if not isinstance(item, dict):
        raise ValidationFailed("a job is an object")
    labels = _strs(item, "labels")
    if not labels:
        raise ValidationFailed("a job needs labels")
    duration = item.get("duration", 0)
    wait = item.get("wait")
    if isinstance(duration, bool) or not isinstance(duration, int | float):
        raise ValidationFailed("duration must be a number")
    if wait is not None and (isinstance(wait, bool) or not isinstance(wait, int | float)):
        raise ValidationFailed("wait must be a number")
    conclusion = item.get("conclusion", "success")
    if not isinstance(conclusion, str):
        raise ValidationFailed("conclusion must be a string")
    return JobSpec(
        tuple(labels),
        _str(item, "name", required=False) or "build",
        float(duration),
        conclusion,
        _str(item, "group", required=False),
        None if wait is None else float(wait),
    )


def add_run(world: World, item: JSON) -> JSON:
    repo = world.repo_by_name(_str(item, "repo") or "")
    jobs = item.get("jobs")
    if not isinstance(jobs, list) or not jobs:
        raise ValidationFailed("jobs must be a non-empty list")
    run = world.enqueue_run(
        repo,
        [job_spec(j) for j in jobs],
        workflow_name=_str(item, "workflow", required=False) or "CI",
        head_branch=_str(item, "head_branch", required=False),
        event=_str(item, "event", required=False) or "push",
        actor=_str(item, "actor", required=False) or "octocat",
    )
    return {"id": run.id, "run_number": run.run_number, "status": run.status, "job_ids": list(run.job_ids)}


# ---- whole documents -----------------------------------------------------------------------------

SECTIONS = (
    ("enterprises", add_enterprise),
    ("orgs", add_org),
    ("repos", add_repo),
    ("runner_groups", add_runner_group),
    ("apps", add_app),
    ("installations", add_installation),
    ("pats", add_pat),
    ("hooks", add_hook),
    ("runs", add_run),
)


def apply_seed(world: World, seed: JSON) -> JSON:
    """Create everything a seed document describes; returns what was created, per section."""
    if not isinstance(seed, dict):
        raise ValidationFailed("a seed is an object")
    unknown = set(seed) - {name for name, _ in SECTIONS} - {"config"}
    if unknown:
        raise ValidationFailed(f"unknown seed sections: {', '.join(sorted(unknown))}")
    if "config" in seed:
        world.config.update(seed["config"])
    created: JSON = {}
    for name, add in SECTIONS:
        items = seed.get(name) or []
        if not isinstance(items, list):
            raise ValidationFailed(f"{name} must be a list")
        created[name] = [add(world, item) for item in items]
    return created


def _export_groups(world: World) -> list[JSON]:
    """The runner groups a seed recreates (default groups are implied)."""
    groups = []
    for groups_of_scope in world.groups.values():
        for g in groups_of_scope.values():
            if g.default:
                continue
            item: JSON = {
                g.scope.kind: g.scope.name,
                "name": g.name,
                "visibility": g.visibility,
                "allows_public_repositories": g.allows_public_repositories,
            }
            if g.selected_repository_ids:
                item["selected_repositories"] = [
                    world.repos_by_id[i].full_name for i in sorted(g.selected_repository_ids)
                ]
            if g.selected_organization_ids:
                item["selected_organizations"] = [
                    o.login for o in world.orgs.values() if o.id in g.selected_organization_ids
                ]
            groups.append(item)
    return groups


def _export_hooks(world: World) -> list[JSON]:
    """The webhooks, with their faults when any is set."""
    hooks = []
    for hook in world.hooks.values():
        h: JSON = {"url": hook.url, "events": hook.events}
        if hook.secret:
            h["secret"] = hook.secret
        if hook.app_id is not None:
            h["app_id"] = hook.app_id
        elif hook.scope is not None:
            h[hook.scope.kind] = hook.scope.name
        faults = hook_json(world, hook.id)["faults"]
        if any(faults[k] for k in ("drop", "duplicate", "reorder", "delay_s", "fail")):
            h["faults"] = faults
        hooks.append(h)
    return hooks


def export_seed(world: World) -> JSON:
    """The world as a seed: loading it with ``apply_seed`` builds the same world."""
    groups = _export_groups(world)
    hooks = _export_hooks(world)
    return {
        "config": world.config.to_dict(),
        "enterprises": [{"slug": e.slug, "name": e.name} for e in world.enterprises.values()],
        "orgs": [
            {
                k: v
                for k, v in (("login", o.login), ("enterprise", o.enterprise), ("description", o.description))
                if v
            }
            for o in world.orgs.values()
        ],
        "repos": [{"full_name": r.full_name, "private": r.private} for r in world.repos.values()],
        "runner_groups": groups,
        "apps": [
            {
                "id": a.id,
                "slug": a.slug,
                "name": a.name,
                "owner": a.owner,
                "public_key_pem": a.public_key_pem,
                "permissions": a.permissions,
            }
            for a in world.apps.values()
        ],
        "installations": [
            {
                "id": i.id,
                "app_id": i.app_id,
                "account": i.account,
                "permissions": i.permissions,
                **(
                    {"repositories": [world.repos_by_id[r].full_name for r in sorted(i.repository_ids)]}
                    if i.repository_selection == "selected"
                    else {}
                ),
            }
            for i in world.installations.values()
        ],
        "pats": [
            {
                "token": p.token,
                "login": p.login,
                "scopes": list(p.scopes),
                **({"orgs": sorted(p.orgs)} if p.orgs is not None else {}),
                **({"repos": sorted(p.repos)} if p.repos is not None else {}),
                **({"enterprises": sorted(p.enterprises)} if p.enterprises is not None else {}),
            }
            for p in world.pats.values()
            if p.expires_at is None
        ],
        "hooks": hooks,
    }


def load_seed_file(path: Path) -> JSON:
    text = path.read_text()
    data = yaml.safe_load(text) if text.strip() else {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValidationFailed(f"{path}: a seed is a mapping")
    return data


def save_seed_file(path: Path, seed: JSON) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    if path.suffix in (".yaml", ".yml"):
        tmp.write_text(yaml.safe_dump(seed, sort_keys=False))
    else:
        import json

        tmp.write_text(json.dumps(seed, indent=2) + "\n")
    tmp.replace(path)
