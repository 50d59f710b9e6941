"""A small level-triggered controller runtime: informers, work queues, leader election, events.

It holds no business logic and no Kubernetes client: it talks to the API through the Protocols in
:mod:`runnerd.runtime.protocols`, which :mod:`runnerd.kube` implements. A controller process::

    informer = Informer("runners", kube.list_watcher(RUNNERS), indexers={"owner": index_by_controller_uid})
    pods = Informer("pods", kube.list_watcher(PODS, label_selector="app=runner"))
    ctl = Controller("runner", reconcile, workers=4)      # async def reconcile(key: Key) -> Result | None
    ctl.watch(informer)                                    # the primary resource: its own keys
    ctl.owns(pods, kind="Runner", group="actions.summerwind.dev")   # pods -> their controller owner
    elector = LeaderElector(kube.lease_client(), namespace=ns, name="runnerd", identity=pod_name)
    manager = Manager(elector=elector)
    manager.add_controller(ctl)
    manager.install_signal_handlers()
    await manager.run()
"""

from runnerd.runtime.controller import (
    Controller,
    EventFilter,
    Mapper,
    Reconcile,
    by_label,
    controller_owner,
    own_key,
    spec_changed,
)
from runnerd.runtime.errors import (
    AlreadyExists,
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    ResourceExpired,
    ServerError,
    TooManyRequests,
    Unauthorized,
)
from runnerd.runtime.events import EventRecorder
from runnerd.runtime.informer import EventType, Informer, InformerEvent
from runnerd.runtime.leader import LeaderElector, LeadershipLost
from runnerd.runtime.manager import Manager
from runnerd.runtime.protocols import EventSink, LeaseClient, ListWatcher
from runnerd.runtime.redact import redact
from runnerd.runtime.store import (
    IndexFunc,
    Store,
    index_by_controller_uid,
    index_by_label,
    index_by_namespace,
    index_by_owner_uid,
    slim_pod,
    strip_unused,
)
from runnerd.runtime.types import Key, LeaseRecord, Obj, Result, WatchEvent, WatchEventType
from runnerd.runtime.workqueue import RateLimiter, ShutDown, TokenBucket, WorkQueue

__all__ = [
    "AlreadyExists",
    "ApiError",
    "BadRequest",
    "Conflict",
    "Controller",
    "EventFilter",
    "EventRecorder",
    "EventSink",
    "EventType",
    "Forbidden",
    "IndexFunc",
    "Informer",
    "InformerEvent",
    "Invalid",
    "Key",
    "LeaderElector",
    "LeadershipLost",
    "LeaseClient",
    "LeaseRecord",
    "ListWatcher",
    "Manager",
    "Mapper",
    "NotFound",
    "Obj",
    "RateLimiter",
    "Reconcile",
    "ResourceExpired",
    "Result",
    "ServerError",
    "ShutDown",
    "Store",
    "TokenBucket",
    "TooManyRequests",
    "Unauthorized",
    "WatchEvent",
    "WatchEventType",
    "WorkQueue",
    "by_label",
    "controller_owner",
    "index_by_controller_uid",
    "index_by_label",
    "index_by_namespace",
    "index_by_owner_uid",
    "own_key",
    "redact",
    "slim_pod",
    "spec_changed",
    "strip_unused",
]
