"""The GitHub Actions service's runner scale-set protocol, as ARC's scale-set listener and
controller (and ``actions/scaleset``) speak it: registration handshake, scale sets and runner groups,
message sessions with long polls, job messages and acquisition, scale-set JIT runners, statistics and
faults.  The protocol is described in ``/work/shared/reference/scale-set-protocol.md`` and
docs/ghsim.md ("The Actions service").

=================  ============================================================================
module             what
=================  ============================================================================
``service``        tenants, scale sets, sessions, the queue, runners (pure)
``jobs``           routing jobs to scale sets and moving them through the stages (pure)
``scaleset``       one scale set's state, statistics and message log (pure)
``render``         JSON shapes
``tokens``         admin and queue JWTs
``http``           the wire (aiohttp), long polls on the simulator clock
``faults``         fault injection; ``admin``: ``/_sim/actions``
=================  ============================================================================
"""

from __future__ import annotations

from .admin import ActionsAdmin
from .http import ActionsHTTP
from .service import ActionsService

__all__ = ["ActionsAdmin", "ActionsHTTP", "ActionsService"]
