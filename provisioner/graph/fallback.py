"""Queries Graph's documentation does not list, each behind a fallback (issue 20, item 10).

``chat-list.md`` says List chats supports ``$expand`` (the members only) and ``$filter``, but
shows no filter expression, and Microsoft's OpenAPI description declares ``$filter`` a free
string (graph-facts). ``topic eq '...'`` and ``chatType eq '...'`` are therefore assumptions:
a Graph that refuses one (400) must not fail a command, and one that accepts it may not filter
as assumed. So every caller lists through `first_accepted`, narrowest form first, moving to a
plainer form when Graph refuses the first page with a 400, and checks each item it gets
itself (chat type, topic) whatever the form.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from provisioner.graph.errors import GraphError

T = TypeVar("T")

#: A query form: its name (for reports: "Graph refused ...") and what starts it (lazily: the
#: first request goes out when the first item is asked for).
Form = tuple[str, Callable[[], Iterator[T]]]

_NOTHING = object()


def first_accepted(forms: Sequence[Form[T]]) -> tuple[Iterator[T], tuple[str, ...]]:
    """The items of the first form whose first page Graph accepts, and the names of the forms
    it refused before. A 400 on the last form, any other error, or a failure on a later page
    raises as it is: only a refused query moves to the next form."""
    refused: list[str] = []
    for n, (name, start) in enumerate(forms):
        items = iter(start())  # a list too (test doubles, a client that reads eagerly)
        try:
            first = next(items, _NOTHING)
        except GraphError as exc:
            if exc.status != 400 or n == len(forms) - 1:
                raise
            refused.append(name)
            continue
        if first is _NOTHING:
            return iter(()), tuple(refused)
        return itertools.chain([first], items), tuple(refused)  # type: ignore[list-item]
    raise ValueError("no query form to try")
