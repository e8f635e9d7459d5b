"""``provision state list|show --format json``: what the state records, for scripts.

One JSON object per command (``format_version`` 1). ``state list`` gives every key with its
chat type, chat id (null for a creation still pending: the next apply reconciles it) and
whether it is protected; ``state show KEY`` gives the key's record as the state stores it.
Neither carries a secret: the state holds none.
"""

from __future__ import annotations

import json
from typing import Any

from provisioner.states.records import State, iter_keys

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
