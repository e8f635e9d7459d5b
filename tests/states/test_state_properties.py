"""Properties of the state codec (issue 21): any state survives a write and a read, and a write
after a read reuses the bytes of every chat it did not change."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from state_strategies import chats, states, view

from provisioner.states.codec import decode_state
from provisioner.states.records import State

SETTINGS = settings(max_examples=60, deadline=None)


def _lines(raw: bytes) -> dict[bytes, bytes]:
    """Each chat's line of an encoded state, by the line's start up to the record."""
    out = {}
    for line in raw.split(b"\n"):
        if line.startswith(b'    "'):
            line = line.rstrip(b",")
            out[line[: line.index(b'": {"chat_id"') + 2]] = line
    return out


@SETTINGS
@given(states())
def test_a_state_survives_a_write_and_a_read(state: State) -> None:
    raw = state.encode()
    back = decode_state(raw, "s.json", "")
    assert view(back) == view(state)
    assert back.serial == state.serial
    assert back.encode() == raw  # the same bytes again: nothing drifts between runs


@SETTINGS
@given(states(), st.data())
def test_a_write_after_a_read_keeps_the_bytes_of_untouched_chats(
    state: State, data: st.DataObject
) -> None:
    raw = state.encode()
    back = decode_state(raw, "s.json", "")
    changed = data.draw(st.sampled_from(sorted(back.chats))) if back.chats else None
    if changed is not None:
        back.put_chat(changed, data.draw(chats))
    new = back.encode()
    before, after = _lines(raw), _lines(new)
    assert len(after) == len(back.chats)
    skip = None if changed is None else b"    " + json.dumps(changed, ensure_ascii=False).encode()
    for start, line in before.items():
        if start[:-1] != skip:
            assert after[start] == line
    assert view(decode_state(new, "s.json", "")) == view(back)
