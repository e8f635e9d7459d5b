"""What an apply did: one `Outcome` per planned key, and the run's `ApplyResult`.

Statuses (the ``status`` of each key in ``apply --format json``, see
``schemas/apply-result.schema.json``): created, adopted (a chat an unfinished creation had made
was found and recorded), updated, deleted, forgotten, failed, skipped (never started: the run
stopped first), interrupted (started, then the run stopped; the state has what was done).
"""

from __future__ import annotations

from dataclasses import dataclass

from provisioner.graph.errors import GraphError
from provisioner.plans.types import Action

CREATED = "created"
ADOPTED = "adopted"  # a chat an unfinished creation had made was found and recorded
UPDATED = "updated"
DELETED = "deleted"
FORGOTTEN = "forgotten"
FAILED = "failed"
SKIPPED = "skipped"  # never started: the run stopped first
INTERRUPTED = "interrupted"  # started, then the run stopped; the state has what was done
STATUSES = (CREATED, ADOPTED, UPDATED, DELETED, FORGOTTEN, FAILED, SKIPPED, INTERRUPTED)


@dataclass(frozen=True)
class Failure:
    """Why a key failed, with what Microsoft support needs to trace the call."""

    message: str
    status: int = 0
    code: str = ""
    request_id: str = ""
    client_request_id: str = ""
    date: str = ""
    hint: str | None = None
    permission: str = ""

    @classmethod
    def of(cls, exc: BaseException) -> Failure:
        if isinstance(exc, GraphError):
            return cls(
                message=exc.message,
                status=exc.status,
                code=exc.code,
                request_id=exc.request_id,
                client_request_id=exc.client_request_id,
                date=exc.date,
                hint=exc.hint,
                permission=getattr(exc, "permission", "") or "",
            )
        hint = getattr(exc, "hint", None)
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        return cls(message=str(message), hint=hint if isinstance(hint, str) else None)


@dataclass(frozen=True)
class Outcome:
    """What happened to one chat key. ``duplicates`` are ids of further chats an unfinished
    creation made (found by reconciliation; reported, never deleted)."""

    key: str
    action: Action
    status: str
    chat_id: str | None = None
    error: Failure | None = None
    duplicates: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass
class ApplyResult:
    """The outcome of every planned key (ordered by key) and the run's figures."""

    plan_id: str
    outcomes: list[Outcome]
    duration_s: float = 0.0
    requests: int = 0
    throttled: int = 0
    retries: int = 0
    token_refreshes: int = 0
    stopped: str | None = None  # why the run stopped early: a signal name, or an error
    stop_error: Failure | None = None
    lookups: int = 0  # reconciliation lookups made
    lookup_requests: int = 0  # the requests they cost
    settle_seconds: float = 0.0  # the time they took, summed over chats (the run went on)
    state_writes: int = 0
    work_total: int = 0  # the Graph requests the plan needed (`provisioner.apply.work`)
    work_done: int = 0  # of those, done (finished changes count whole)
    # The final state write failed after the run changed chats (their records are in the
    # journal): the outcomes stand, the run did not succeed (issue 20).
    unsaved: Failure | None = None

    @property
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for o in self.outcomes:
            counts[o.status] += 1
        return counts

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == FAILED]

    @property
    def complete(self) -> bool:
        """Every change was made: nothing failed, nothing left undone."""
        return all(o.status not in (FAILED, SKIPPED, INTERRUPTED) for o in self.outcomes)
