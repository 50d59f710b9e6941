"""Volumes of finished RunnerSet runners: their claims deleted, their volumes handed on.

Volume claims of ``volumeClaimTemplates`` are not deleted with a runner's StatefulSet. Once it is
gone, its claims are deleted and a volume whose reclaim policy is ``Retain`` is handed to the next
runner of the same RunnerSet that waits for a claim of the same template (the volume's ``claimRef``
is set to that claim, so no other namespace or RunnerSet can take it). Needs no polling: claim and
volume events wake the RunnerSet up. Without rights on PersistentVolumes (``volumes`` is None),
claims are still deleted but volumes are not handed on.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol

from runnerd.controller.common import created_at
from runnerd.kube.client import KubeClient
from runnerd.kube.resources import PERSISTENT_VOLUME_CLAIMS, Resource
from runnerd.manifests.runnerset import claim_ref
from runnerd.reconcile.runnerset import LABEL_RUNNER_STATEFULSET_NAME, claim_fits_volume, claim_template_name
from runnerd.runtime import Conflict, EventRecorder, Forbidden, Informer, Key, NotFound, Obj

PERSISTENT_VOLUMES = Resource("", "v1", "persistentvolumes", "PersistentVolume", namespaced=False)

LABEL_RECYCLE = "runnerd.dev/recycle"
"""On a PersistentVolume released by a finished runner, until the next runner has it."""
ANNOTATION_RECYCLE_FOR = "runnerd.dev/recycle-for"
"""``<namespace>/<runnerset>`` whose next runner gets the volume."""
ANNOTATION_RECYCLE_TEMPLATE = "runnerd.dev/recycle-claim-template"
ANNOTATION_RECYCLE_FROM = "runnerd.dev/recycle-from-claim"
ANNOTATION_RECYCLED_VOLUME = "runnerd.dev/recycled-volume"
"""On a claim given a released volume (the update also makes the volume binder look at it now)."""

RESERVATION_GRACE = 30.0
"""How long a claim this process gave a volume may be missing its annotation in the informer."""


class VolumeStats(Protocol):
    claims_deleted: int
    volumes_reused: int


class VolumeRecycler:
    """The claims and released volumes of one controller's RunnerSets."""

    def __init__(
        self,
        *,
        kube: KubeClient,
        recorder: EventRecorder,
        claims: Informer | None,
        volumes: Informer | None,
        index: str,
        stats: VolumeStats,
    ) -> None:
        self.kube = kube
        self.recorder = recorder
        self.claims = claims
        self.volumes = volumes
        self.index = index
        """The claims store's index by ``<namespace>/<runnerset>``."""
        self.stats = stats
        self._reserved: dict[str, float] = {}  # claim uid -> when a volume was reserved for it

    def marked_volumes(self, key: Key) -> list[Obj]:
        """Volumes of finished runners waiting for the next runner of RunnerSet ``key``."""
        if self.volumes is None:
            return []
        return [
            v
            for v in self.volumes.store.objects()
            if (v["metadata"].get("annotations") or {}).get(ANNOTATION_RECYCLE_FOR) == str(key)
        ]

    def orphan_claims(self, key: Key) -> list[Obj]:
        if self.claims is None:
            return []
        return self.claims.store.by_index(self.index, f"{key.namespace}/{key.name}")

    async def recycle(
        self, key: Key, obj: Mapping[str, Any] | None, live: set[str], *, runnerset_exists: bool
    ) -> None:
        """Delete the claims of runners that are gone; hand their released volumes to new runners.
        Needs no polling: claim and volume events wake the RunnerSet up."""
        if self.claims is None:
            return
        claims = self.claims.store.by_index(self.index, f"{key.namespace}/{key.name}")
        for claim in claims:
            meta = claim["metadata"]
            owner = (meta.get("labels") or {}).get(LABEL_RUNNER_STATEFULSET_NAME, "")
            if owner in live or meta.get("deletionTimestamp") or (not runnerset_exists and live):
                continue
            volume = (claim.get("spec") or {}).get("volumeName")
            template = claim_template_name(meta["name"], owner)
            if runnerset_exists and self.volumes is not None and volume and template:
                await self._mark_volume(obj, str(volume), key, template, meta["name"])
            await self.kube.delete(
                PERSISTENT_VOLUME_CLAIMS,
                meta["name"],
                namespace=key.namespace,
                uid=meta.get("uid"),
                missing_ok=True,
            )
            self.stats.claims_deleted += 1
        for volume in self.marked_volumes(key):
            vmeta = volume["metadata"]
            annotations = vmeta.get("annotations") or {}
            ref = (volume.get("spec") or {}).get("claimRef") or {}
            if not runnerset_exists or ref.get("name") != annotations.get(ANNOTATION_RECYCLE_FROM):
                await self._unmark_volume(volume, None)  # the RunnerSet is gone, or someone else rebound it
                continue
            if (volume.get("status") or {}).get("phase") != "Released":
                continue  # the old claim is still going away
            target = self._waiting_claim(claims, volume, str(annotations.get(ANNOTATION_RECYCLE_TEMPLATE)))
            if target is not None:
                await self._unmark_volume(volume, target)
                if obj is not None:
                    await self.recorder.normal(
                        obj,
                        "VolumeReused",
                        f"volume {vmeta['name']} of a finished runner goes to claim "
                        f"{target['metadata']['name']}",
                    )

    def _waiting_claim(self, claims: list[Obj], volume: Obj, template: str) -> Obj | None:
        now = time.monotonic()
        self._reserved = {uid: at for uid, at in self._reserved.items() if now - at < RESERVATION_GRACE}
        waiting = [
            c
            for c in claims
            if c["metadata"].get("uid") not in self._reserved  # the informer may not show our annotation yet
            and not (c.get("spec") or {}).get("volumeName")
            and not c["metadata"].get("deletionTimestamp")
            and (c.get("status") or {}).get("phase", "Pending") == "Pending"
            and claim_template_name(
                c["metadata"]["name"],
                (c["metadata"].get("labels") or {}).get(LABEL_RUNNER_STATEFULSET_NAME, ""),
            )
            == template
            and not (c["metadata"].get("annotations") or {}).get(ANNOTATION_RECYCLED_VOLUME)
            and claim_fits_volume(c, volume)
        ]
        waiting.sort(key=lambda c: (created_at(c), c["metadata"]["name"]))
        return waiting[0] if waiting else None

    async def _mark_volume(
        self, obj: Mapping[str, Any] | None, volume: str, key: Key, template: str, claim: str
    ) -> None:
        try:
            current = await self.kube.get(PERSISTENT_VOLUMES, volume)
            if (current.get("spec") or {}).get("persistentVolumeReclaimPolicy") != "Retain":
                return  # deleted with its claim: nothing to reuse
            await self.kube.patch(
                PERSISTENT_VOLUMES,
                volume,
                {
                    "metadata": {
                        "labels": {LABEL_RECYCLE: "true"},
                        "annotations": {
                            ANNOTATION_RECYCLE_FOR: str(key),
                            ANNOTATION_RECYCLE_TEMPLATE: template,
                            ANNOTATION_RECYCLE_FROM: claim,
                        },
                    }
                },
            )
        except NotFound:
            return
        except Forbidden as exc:
            if obj is not None:
                await self.recorder.warning(
                    obj, "VolumeNotReused", f"volume {volume} cannot be reused: {exc}"
                )

    async def _unmark_volume(self, volume: Obj, target: Obj | None) -> None:
        meta = volume["metadata"]
        patch: Obj = {
            "metadata": {
                "labels": {LABEL_RECYCLE: None},
                "annotations": {
                    ANNOTATION_RECYCLE_FOR: None,
                    ANNOTATION_RECYCLE_TEMPLATE: None,
                    ANNOTATION_RECYCLE_FROM: None,
                },
            }
        }
        if target is not None:
            # Pre-bind: a claimRef without uid reserves the volume for this claim only.
            ref = {**claim_ref(target), "uid": None, "resourceVersion": None, "fieldPath": None}
            patch["spec"] = {"claimRef": ref}
        try:
            await self.kube.patch(
                PERSISTENT_VOLUMES, meta["name"], patch, resource_version=meta.get("resourceVersion")
            )
        except (NotFound, Conflict):
            return
        if target is None:
            return
        self.stats.volumes_reused += 1
        tmeta = target["metadata"]
        self._reserved[str(tmeta.get("uid"))] = time.monotonic()
        try:
            await self.kube.patch(
                PERSISTENT_VOLUME_CLAIMS,
                tmeta["name"],
                {"metadata": {"annotations": {ANNOTATION_RECYCLED_VOLUME: meta["name"]}}},
                namespace=tmeta["namespace"],
            )
        except NotFound:
            return
