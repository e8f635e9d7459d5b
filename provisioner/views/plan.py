"""Views of a Plan: text for a terminal, JSON for scripts, Markdown for pull-request comments.

Pure functions from a Plan to a string; the CLI decides where it goes and whether to colour it
(only on a terminal, and never when ``NO_COLOR`` is set: https://no-color.org).
Validation diagnostics are rendered elsewhere; this module only knows plans.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from provisioner.plans.summary import summary_line
from provisioner.plans.types import ACTIONS, Action, Change, Drift, Plan
from provisioner.plans.workspace import WorkspaceChange
from provisioner.states.records import MemberRecord

JSON_FORMAT_VERSION = 1
FORMATS = ("text", "json", "markdown")

# GitHub rejects issue and pull-request comments over 65,536 characters; stay clearly below it
# (GitHub counts a little differently from Python for some characters).
GITHUB_COMMENT_LIMIT = 65_536
MARKDOWN_BUDGET = GITHUB_COMMENT_LIMIT - 1_536

_RESET = "\x1b[0m"
_COLORS = {
    "+": "\x1b[32m",  # green
    "~": "\x1b[33m",  # yellow
    "-": "\x1b[31m",  # red
    "?": "\x1b[36m",  # cyan
    ".": "\x1b[2m",  # dim
    "#": "\x1b[1m",  # bold (a chat's heading)
    " ": "",
}

_TITLES = {
    Action.CREATE: "will be created",
    Action.UPDATE: "will be updated in place",
    Action.DELETE: "will be deleted",
    Action.FORGET: "will be forgotten",
    Action.RECONCILE: "has an unfinished creation to reconcile",
}
_LEGEND = {
    Action.CREATE: "create (a oneOnOne chat: create, or adopt the one Graph already has)",
    Action.UPDATE: "update in place",
    Action.DELETE: "delete",
    Action.FORGET: "forget (stop managing; the chat stays in Teams)",
    Action.RECONCILE: "reconcile (look up an unfinished creation before creating)",
}
_PLAIN = re.compile(r"^[A-Za-z0-9._@:+-]+$")

# A line of a plan view: (symbol, depth, text). The text view indents then prints the symbol;
# the Markdown view puts the symbol first so GitHub's ``diff`` highlighting colours it.
Line = tuple[str, int, str]


def render_plan(plan: Plan, fmt: str = "text", color: bool = False) -> str:
    if fmt == "text":
        return render_text(plan, color=color)
    if fmt == "json":
        return render_json(plan)
    if fmt == "markdown":
        return render_markdown(plan)
    raise ValueError(f"unknown plan format {fmt!r}; expected one of {', '.join(FORMATS)}")


# --- shared pieces -------------------------------------------------------------------------


def _q(text: str | None) -> str:
    """A user-controlled value, safe to print: JSON quoting escapes control characters, so a
    topic cannot inject terminal escape sequences or break a line."""
    if text is None:
        return "(none)"
    return json.dumps(text, ensure_ascii=False)


def _plain(text: str) -> str:
    return text if _PLAIN.match(text) else _q(text)


def _user(m: MemberRecord) -> str:
    return _plain(m.user)


def _member(m: MemberRecord) -> str:
    text = f"member {_user(m)}  {m.role}"
    if m.tenant_id:
        text += f", tenant {_plain(m.tenant_id)}"
    if m.via:
        text += f"  (from {_q(m.via) if not _PLAIN.match(m.via.replace(' ', '')) else m.via})"
    return text


#: The actions the ``Plan:`` line counts, in its order.
def _workspace_lines(ws: WorkspaceChange) -> Iterator[Line]:
    """Apps before tabs, as apply does them (issue 24)."""
    for app in ws.install:
        yield ("+", 1, f"app {_q(app.ref.split(':', 1)[1])} ({_plain(app.app_id)})")
    for old in ws.uninstall:
        yield ("-", 1, f"app {_q(old.ref.split(':', 1)[1])} ({_plain(old.app_id)})")
    for tab in ws.add_tabs:
        yield ("+", 1, f"tab {_q(tab.name)} ({_plain(tab.app_id)})")
    for tab in ws.update_tabs:
        yield ("~", 1, f"tab {_q(tab.name)} (name or configuration)")
    for tab in ws.remove_tabs:
        yield ("-", 1, f"tab {_q(tab.name)}")


def _change_lines(change: Change) -> Iterator[Line]:
    action = change.action
    where = f" (chat {_plain(change.chat_id)})" if change.chat_id else ""
    if change.moved_from is not None:
        yield ("#", 0, f"{change.moved_from} has moved to {change.key}{where}")
        if action is Action.NOOP:
            where = ""
    imported = change.import_id is not None
    if imported:
        tail = ", then updated in place" if action is Action.UPDATE else ""
        yield (
            "#",
            0,
            f"{change.key} will be imported (chat {_plain(change.import_id or '')}){tail}",
        )
        if action is Action.NOOP:
            for note in change.notes:
                yield (" ", 1, f"# {note}")
            return
    if action is Action.NOOP:
        if change.protect_change is not None:
            yield ("#", 0, f"{change.key}: protection changes (recorded in the state){where}")
            yield ("~", 1, _protect_line(change.protect_change))
        if change.workspace is not None and change.workspace.adopt:
            yield ("#", 0, f"{change.key}: apps and tabs recorded in the state{where}")
            for note in change.workspace.notes:
                yield (" ", 1, f"# {note}")
        if change.reason == "expired-protected":
            yield ("#", 0, f"{change.key} has expired but is protected: kept{where}")
            for note in change.notes:
                yield (" ", 1, f"# {note}")
        return
    title = _TITLES[action]
    if action is Action.DELETE and change.reason == "expired":
        title = "will be deleted (expired)"
    if action is Action.CREATE and change.chat_type == "oneOnOne":
        title = "will be created, or the existing one-on-one chat adopted"
    if not imported:  # an import said it all in its own line
        yield ("#", 0, f"{change.key} {title}{where}")
    reason = ": delete (expired)" if change.reason == "expired" else ""
    yield (action.symbol, 0, f'chat "{change.key}" ({change.chat_type}){reason}')
    if change.protect_change is not None:
        if action is Action.CREATE and change.protect_change[1]:
            yield ("+", 1, "protect true")  # a new chat has nothing to flip from
        else:
            yield ("~", 1, _protect_line(change.protect_change))
    if action in (Action.CREATE, Action.RECONCILE):
        if change.topic is not None:
            yield (action.symbol, 1, f"topic {_q(change.topic)}")
        for m in change.members:
            yield (action.symbol, 1, _member(m))
    elif action is Action.UPDATE:
        if change.topic_change is not None:
            old, new = change.topic_change
            yield ("~", 1, f"topic {_q(old)} -> {_q(new)}")
        for m in change.add:
            yield ("+", 1, _member(m))
        for m in change.remove:
            yield ("-", 1, _member(m))
        for r in change.role_changes:
            yield ("~", 1, f"member {_user(r.member)}  role {r.old_role} -> {r.member.role}")
        for m in change.unmanaged:
            yield (" ", 1, f"{_member(m)}  {UNMANAGED}")
        touched = len(change.add) + len(change.role_changes) + len(change.unmanaged)
        unchanged = len(change.members) - touched
        if unchanged > 0:
            yield (" ", 1, f"({unchanged} member{'s' if unchanged != 1 else ''} unchanged)")
    elif action is Action.DELETE:
        if change.topic is not None:
            yield ("-", 1, f"topic {_q(change.topic)}")
        for m in change.members:
            yield ("-", 1, _member(m))
    if change.workspace is not None:
        yield from _workspace_lines(change.workspace)
    if change.origin is not None:
        yield (" ", 1, f"# from {change.origin}")
    for note in change.notes:
        yield (" ", 1, f"# {note}")


#: How a member that ``membership: additive`` leaves alone is shown (issue 22).
UNMANAGED = "(unmanaged: added outside provision, kept)"


def _unmanaged_lines(change: Change) -> Iterator[Line]:
    """A chat without changes that has members someone else added (``membership: additive``):
    they are named, so the plan says who is in the chat beyond the manifest."""
    where = f" (chat {_plain(change.chat_id)})" if change.chat_id else ""
    yield ("#", 0, f"{change.key}: no changes{where}")
    for m in change.unmanaged:
        yield (" ", 1, f"{_member(m)}  {UNMANAGED}")


def _quiet_unmanaged(plan: Plan) -> tuple[Change, ...]:
    """Changes not otherwise listed whose chat has unmanaged members."""
    return tuple(c for c in plan.changes if c.unmanaged and c not in plan.reported)


def _protect_line(flip: tuple[bool, bool]) -> str:
    return f"protect {str(flip[0]).lower()} -> {str(flip[1]).lower()}"


def _drift_lines(d: Drift) -> Iterator[Line]:
    if d.gone:
        yield ("#", 0, f"{d.key} was deleted outside provision (chat {_plain(d.chat_id)})")
        return
    yield ("#", 0, f"{d.key} was changed outside provision (chat {_plain(d.chat_id)})")
    if d.topic_change is not None:
        yield ("~", 1, f"topic {_q(d.topic_change[0])} -> {_q(d.topic_change[1])}")
    for m in d.added:
        yield ("+", 1, _member(m))
    for m in d.removed:
        yield ("-", 1, _member(m))
    for r in d.role_changes:
        yield ("~", 1, f"member {_user(r.member)}  role {r.old_role} -> {r.member.role}")


def _legend(plan: Plan) -> list[str]:
    used = {c.action for c in plan.changes}
    return [f"  {a.symbol} {_LEGEND[a]}" for a in ACTIONS if a in used and a in _LEGEND]


DRIFT_HEADING = "Changes outside provision (found by refresh, not by the manifest):"
ACTIONS_HEADING = "provision will perform the following actions:"
UNMANAGED_HEADING = (
    "Members added outside provision, left as they are (membership: additive; with "
    "membership: exact they would be removed):"
)


# --- text ----------------------------------------------------------------------------------


def _text_line(line: Line, color: bool) -> str:
    symbol, depth, text = line
    indent = "  " + "    " * depth
    out = f"{indent}{symbol} {text}"
    if color and _COLORS.get(symbol):
        return f"{_COLORS[symbol]}{out}{_RESET}"
    return out


def render_text(plan: Plan, color: bool = False) -> str:
    out: list[str] = []
    if plan.drift:
        out += [DRIFT_HEADING, ""]
        for d in plan.drift:
            out.extend(_text_line(line, color) for line in _drift_lines(d))
            out.append("")
    if plan.reported:
        out += [ACTIONS_HEADING, "", *_legend(plan), ""]
        for change in plan.reported:
            out.extend(_text_line(line, color) for line in _change_lines(change))
            out.append("")
    quiet = _quiet_unmanaged(plan)
    if quiet:
        out += [UNMANAGED_HEADING, ""]
        for change in quiet:
            out.extend(_text_line(line, color) for line in _unmanaged_lines(change))
            out.append("")
    summary = summary_line(plan)
    out.append(f"\x1b[1m{summary}{_RESET}" if color else summary)
    return "\n".join(out) + "\n"


# --- json ----------------------------------------------------------------------------------


def render_json(plan: Plan) -> str:
    """One JSON object: ``format_version``, ``summary`` (action -> count), ``changes`` (one per
    key, no-ops included), ``drift``, and what the plan was made against."""
    document = {"format_version": JSON_FORMAT_VERSION, **plan.to_dict()}
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


# --- markdown ------------------------------------------------------------------------------


def _diff_line(line: Line) -> str:
    symbol, depth, text = line
    if symbol == "#":
        return f"# {'    ' * depth}{text}"
    # GitHub's diff highlighting colours "+" green, "-" red and "!" orange; "~" means nothing
    # to it, so an in-place change is shown with "!" (as tfcmt does for Terraform plans).
    shown = "!" if symbol == "~" else symbol
    return f"{shown} {'    ' * depth}{text}"


def _fence(blocks: list[str]) -> str:
    longest = max((len(m) for b in blocks for m in re.findall(r"`+", b)), default=0)
    return "`" * max(3, longest + 1)


def render_markdown(plan: Plan, limit: int = MARKDOWN_BUDGET) -> str:
    """A pull-request comment (or ``$GITHUB_STEP_SUMMARY``): summary table, then the drift and
    the changes in collapsible blocks; cut with a note before ``limit`` characters."""
    foot = _markdown_foot(plan)
    sections = []
    if plan.drift:
        sections.append(("Changes outside provision", [list(_drift_lines(d)) for d in plan.drift]))
    if plan.reported:
        sections.append(("Changes", [list(_change_lines(c)) for c in plan.reported]))
    quiet = _quiet_unmanaged(plan)
    if quiet:
        sections.append(("Unmanaged members", [list(_unmanaged_lines(c)) for c in quiet]))
    budget = limit - len(foot) - 400  # room for the truncation note
    text, shown = _markdown_sections(_markdown_head(plan), sections, budget)
    total = sum(len(blocks) for _, blocks in sections)
    if shown < total:
        text += (
            f"\n> **Truncated:** {shown} of {total} chats are shown; GitHub comments are limited "
            f"to {GITHUB_COMMENT_LIMIT:,} characters. The full plan: `provision plan` in a "
            f"terminal, or `--format json`.\n"
        )
    return text + foot


def _markdown_head(plan: Plan) -> str:
    """The title, the summary line and a table of counts."""
    counts = plan.summary
    head = ["### provision plan", "", f"**{summary_line(plan)}**", ""]
    if plan.targets:  # a reviewer must see that the rest was not looked at (--target)
        patterns = ", ".join(f"`{p}`" for p in plan.targets)
        head += [f"> **Targeted plan:** only chat keys matching {patterns} were planned.", ""]
    head += ["| Action | Chats |", "| --- | ---: |"]
    for action in ACTIONS:
        label = "no change" if action is Action.NOOP else f"`{action.symbol}` {action.value}"
        head.append(f"| {label} | {counts[action.value]} |")
    if plan.drift:
        head.append(f"| changed outside provision | {len(plan.drift)} |")
    if plan.moves:
        head.append(f"| moved (key renamed) | {len(plan.moves)} |")
    head.append("")
    return "\n".join(head)


def _markdown_foot(plan: Plan) -> str:
    """What the plan was made against, in small print."""
    state = (
        f"state serial {plan.state_serial} (lineage `{plan.state_lineage}`)"
        if plan.state_lineage
        else "no state yet"
    )
    refresh = "refreshed from Graph" if plan.refreshed else "not refreshed"
    foot = [
        "",
        f"<sub>Made against {state}, {refresh}; manifests `{plan.manifest_digest or '-'}`; "
        f"provision {plan.tool_version}.</sub>",
        "",
    ]
    return "\n".join(foot)


def _markdown_sections(
    text: str, sections: list[tuple[str, list[list[Line]]]], budget: int
) -> tuple[str, int]:
    """``text`` with each section as a collapsible diff block, as many chats as fit in
    ``budget`` characters; and how many chats are shown."""
    shown = 0
    for title, blocks in sections:
        rendered = ["\n".join(_diff_line(line) for line in block) for block in blocks]
        fence = _fence(rendered)
        opening = f"\n<details><summary>{title} ({len(blocks)})</summary>\n\n{fence}diff\n"
        closing = f"{fence}\n\n</details>\n"
        if len(text) + len(opening) + len(closing) > budget:
            return text, shown
        text += opening
        for block in rendered:
            if len(text) + len(block) + 2 + len(closing) > budget:
                return text + closing, shown
            text += block + "\n\n"
            shown += 1
        text += closing
    return text, shown
