"""Hypothesis strategies for the state's records (shared by the codec and journal properties)."""

from __future__ import annotations

from hypothesis import strategies as st

from provisioner.models import CHAT_TYPES, ROLES
from provisioner.states.records import ChatRecord, Intent, MemberRecord, State
from provisioner.states.settling import ADDED, REMOVED, Settling

# Keys and texts beyond the manifest's pattern: a state is a file people edit, and the codec's
# fast path finds each chat's line by its key (quotes, backslashes, "\u2028"...).
texts = st.text(min_size=1, max_size=12)
optional_texts = st.none() | texts
keys = st.text(min_size=1, max_size=10)

members = st.builds(
    MemberRecord,
    user=texts,
    role=st.sampled_from(ROLES),
    object_id=optional_texts,
    tenant_id=optional_texts,
    membership_id=optional_texts,
)
settlings = st.builds(
    Settling, object_id=texts, change=st.sampled_from((ADDED, REMOVED)), until=texts
)
chats = st.builds(
    ChatRecord,
    chat_id=texts,
    chat_type=st.sampled_from(CHAT_TYPES),
    members=st.lists(members, max_size=3).map(tuple),
    topic=optional_texts,
    created_at=optional_texts,
    settling=st.lists(settlings, max_size=2).map(tuple),
)


def intents(key: str) -> st.SearchStrategy[Intent]:
    return st.builds(
        Intent,
        key=st.just(key),
        chat_type=st.sampled_from(CHAT_TYPES),
        members=st.lists(members, max_size=3).map(tuple),
        attempt_id=texts,
        started_at=texts,
        topic=optional_texts,
    )


@st.composite
def states(draw: st.DrawFn) -> State:
    state = State(serial=draw(st.integers(0, 2**63 - 1)))
    for key, record in draw(st.dictionaries(keys, chats, max_size=6)).items():
        state.put_chat(key, record)
    for key in draw(st.lists(keys, max_size=3, unique=True)):
        state.put_intent(draw(intents(key)))
    state.put_users(draw(st.dictionaries(texts, texts, max_size=3)))
    for key in draw(st.lists(st.sampled_from(sorted(state.chats)), unique=True)
                    if state.chats else st.just([])):  # fmt: skip
        state.set_protected(key, True)
    state.last_plan_id = draw(optional_texts)
    state.tenant_id = draw(st.none() | st.text(min_size=1, max_size=20))
    state.cloud = draw(st.none() | st.sampled_from(("global", "usgov")))
    return state


def view(state: State) -> dict[str, object]:
    """Everything a state says, as plain data (``State`` compares by identity)."""
    return {
        "lineage": state.lineage,
        "chats": {k: r.to_dict() for k, r in state.chats.items()},
        "intents": {k: i.to_dict() for k, i in state.intents.items()},
        "users": dict(state.users),
        "protected": set(state.protected),
        "last_plan_id": state.last_plan_id,
        "tenant_id": state.tenant_id,
        "cloud": state.cloud,
    }
