"""``provision state list|show --format json``: what the state records, for scripts; and what
``provision state repair`` did (text).

One JSON object per command (``format_version`` 1). ``state list`` gives every key with its
chat type, chat id (null for a creation still pending: the next apply reconciles it) and
whether it is protected; ``state show KEY`` gives the key's record as the state stores it.
Neither carries a secret: the state holds none.
"""

from __future__ import annotations

import json
from typing import Any

from provisioner.states.records import State, iter_keys
from provisioner.states.salvage import RepairReport

JSON_FORMAT_VERSION = 1


def _dump(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _head(state: State, location: str) -> dict[str, Any]:
    return {
        "format_version": JSON_FORMAT_VERSION,
        "state": location,
        "exists": state.exists,
        "lineage": state.lineage if state.exists else None,
        "serial": state.serial,
    }


def state_list_json(state: State, location: str) -> str:
    """Every managed key: ``key``, ``chat_type``, ``chat_id`` (null while pending),
    ``pending`` and ``protected``."""
    chats = []
    for key in iter_keys(state):
        record = state.chats.get(key)
        chats.append(
            {
                "key": key,
                "chat_type": record.chat_type if record else state.intents[key].chat_type,
                "chat_id": record.chat_id if record else None,
                "pending": key in state.intents,
                "protected": key in state.protected,
            }
        )
    return _dump({**_head(state, location), "chats": chats})


def state_show_json(state: State, location: str, key: str) -> str:
    """One key: its ``chat`` as recorded (chat id, type, topic, created_at, members) or null,
    its ``pending`` creation (attempt id, start, members) or null, and ``protected``."""
    record = state.chats.get(key)
    intent = state.intents.get(key)
    return _dump(
        {
            **_head(state, location),
            "key": key,
            "chat": record.to_dict() if record else None,
            "pending": intent.to_dict() if intent else None,
            "protected": key in state.protected,
        }
    )


def repair_text(report: RepairReport, location: str) -> str:
    """What ``provision state repair`` did, for people."""
    if report.nothing:
        return f"Nothing to repair: {location} has no journal and reads back."
    lines = []
    if report.from_backup is not None:
        lines.append(
            f"The state file could not be read: rebuilt on its backup (serial "
            f"{report.from_backup}) with {report.salvaged_chats} complete chat(s) from the "
            "damaged file."
        )
    if report.protected:
        lines.append(
            f"{len(report.protected)} chat(s) after the cut come from the backup and are now "
            f"protected (a plan that would delete one stops): {', '.join(report.protected)}."
        )
    if report.restored:
        at = ", ".join(str(o) for o in report.restored)
        lines.append(f"Restored {len(report.restored)} record(s) with one flipped bit (byte {at}).")
    for offset, length in report.lost:
        lines.append(
            f"Could not read {length} bytes at byte {offset} of the journal: the change they held "
            "is not in the state (the copy below keeps them); run `provision plan` to see "
            "what it would do."
        )
    for number, why in report.skipped:
        lines.append(
            f"Left out journal record {number}: this provision cannot apply it ({why}); the "
            "copy below keeps it."
        )
    if report.absorbed:
        lines.append("The state already held every record of the journal (written after it).")
    else:
        lines.append(f"Wrote {report.applied} journal record(s) into the state.")
    lines.extend(f"Kept a copy of the damaged bytes in {kept}." for kept in report.kept)
    lines.append(f"{location} is at serial {report.serial}; its journal was absorbed.")
    return "\n".join(lines)
