"""``provision state repair``: bring a state whose journal (or file) is damaged back to a state
every command reads, without dropping a readable record.

Every refusal of a damaged or out-of-step journal names this command (``states.journal``).
Under the state's lock it reads the journal with ``states.salvage`` (a record with one flipped
bit is restored exactly; damage beyond that is reported with its offset), applies every record
the state does not hold yet, keeps a copy of the journal's bytes beside it, writes the state
(which absorbs the journal) and removes the journal. Cases it resolves:

- damage in the middle of the journal (the good records after it are kept);
- a journal one serial behind the state without its marker: the state was written in full by
  the run that owned the journal after the journal broke (only that run, under the lock, can
  write the serial after the journal's), so it already holds every record;
- a local state file cut short while a journal exists: the backup (the version before), every
  complete chat line of the cut file (chats are written sorted by key, so the cut file is
  authoritative up to its last complete line) and the journal, in that order; pending
  creations of both versions are kept. A chat recorded only after the cut, in the version the
  backup does not hold, cannot be known: the report says how many chats came from where.
"""

from __future__ import annotations

import time

from provisioner.errors import StateError
from provisioner.states.journal import apply_records, pending
from provisioner.states.local import LocalStateStore
from provisioner.states.records import State
from provisioner.states.salvage import (
    JournalSalvage,
    RepairReport,
    salvage_journal,
    salvage_state,
)
from provisioner.states.store import JournaledStore


def repair(store: JournaledStore) -> RepairReport:
    report = RepairReport()
    stamp = time.strftime(".%Y%m%dT%H%M%SZ", time.gmtime())
    with store.lock("state repair"):
        damaged_bytes: bytes | None = None
        try:
            state = store.inner.read()
        except StateError:
            state, damaged_bytes = _rebuild(store, report)
        raw = store.journal.read()
        if raw is None and damaged_bytes is None:
            report.nothing = True
            return report
        if raw:
            salvage = salvage_journal(raw, store.journal.location)
            _journal_into(state, salvage, store, report)
            report.kept.append(store.journal.keep(raw, stamp + ".damaged"))
        if damaged_bytes is not None:
            inner = store.inner
            assert isinstance(inner, LocalStateStore)
            keep = inner.path + stamp + ".damaged"
            inner.replace_damaged(state, state.serial + 1, keep)
            report.kept.append(keep)
        else:
            store.inner.write(state)
        store.journal.remove()
        store.leftover = False
        report.serial = state.serial
    return report


def _journal_into(
    state: State, salvage: JournalSalvage, store: JournaledStore, report: RepairReport
) -> None:
    report.restored = salvage.restored
    report.lost = [(d.offset, d.length) for d in salvage.lost]
    parsed = salvage.parsed
    records = pending(state, parsed, store.journal.location, store.location, salvage=True)
    head = parsed.header
    report.absorbed = (
        head is not None
        and head["serial"] + 1 == state.serial
        and not records
        and bool(parsed.records)
    )
    report.skipped = apply_records(state, records, store.journal.location, skip_bad=True)
    report.applied = len(records) - len(report.skipped)


def _rebuild(store: JournaledStore, report: RepairReport) -> tuple[State, bytes]:
    """The state to write over a damaged local state file (see the module docstring)."""
    inner = store.inner
    if not isinstance(inner, LocalStateStore):
        raise StateError(
            f"the state {store.location} cannot be read; `state repair` rebuilds only local "
            "state files",
            hint=f"copy the backup {store.backup_location} over it, then run "
            "`provision state repair` again for its journal",
        )
    raw, backup = inner.damaged()
    pieces = salvage_state(raw, store.location)
    if backup is None or (pieces.lineage is not None and pieces.lineage != backup.lineage):
        raise StateError(
            f"the state {store.location} cannot be read and no backup of it can be either",
            hint="provision changed nothing; restore the state file from your own copy",
        )
    state = backup
    report.from_backup = backup.serial
    # Chats are written sorted by key: a backup key before the cut that the damaged file no
    # longer lists was removed in that version. One after the cut may have been removed too
    # (`state rm`, when its chat lives on): protected, a plan that would delete it stops.
    cut = max(pieces.chats, default="")
    for key in sorted(k for k in state.chats if k not in pieces.chats):
        if key < cut:
            state.remove_chat(key)
        elif key not in state.protected:
            state.set_protected(key, True)
            report.protected.append(key)
    for key, record in pieces.chats.items():
        state.put_chat(key, record)
    for key, intent in (pieces.intents or {}).items():
        if key not in state.chats:
            state.put_intent(intent)
    report.salvaged_chats = len(pieces.chats)
    # The journal continues the damaged version: write after both.
    state.serial = max(backup.serial, pieces.serial or 0)
    return state, raw
