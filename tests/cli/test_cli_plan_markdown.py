"""`provision plan --format markdown` end to end: what a pipeline posts as a pull-request comment
stays under GitHub's 65,536-character limit however large the plan, and says when it is cut."""

from __future__ import annotations

import re
from pathlib import Path

from lib.pipeline_support import base_env, provision, write_manifest

from provisioner.plans.files import load_plan
from provisioner.states.local import LocalStateStore
from provisioner.states.records import ChatRecord
from provisioner.views.plan import GITHUB_COMMENT_LIMIT

CHATS = 5000


def _plan_markdown(tmp_path: Path, manifest: Path, state: Path) -> str:
    done = provision(
        "plan",
        str(manifest),
        "--no-refresh",
        "--state",
        str(state),
        "--format",
        "markdown",
        env=base_env(tmp_path),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _table(markdown: str) -> dict[str, int]:
    rows = re.findall(r"^\| (.+?) \| (\d+) \|$", markdown, flags=re.MULTILINE)
    return {label: int(count) for label, count in rows}


def test_5000_creations_fit_in_one_comment(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "chats.yaml", CHATS)
    markdown = _plan_markdown(tmp_path, manifest, tmp_path / "state.json")
    assert len(markdown) < GITHUB_COMMENT_LIMIT
    assert len(markdown.encode("utf-16-le")) // 2 < GITHUB_COMMENT_LIMIT  # GitHub's count
    assert _table(markdown)["`+` create"] == CHATS
    assert (
        f"**Plan: {CHATS} to create, 0 to update, 0 to delete, 0 to forget, "
        "0 to reconcile, 0 to move, 0 to import, 0 protection changes.**"
    ) in markdown
    truncated = re.search(r"\*\*Truncated:\*\* (\d+) of 5000 chats are shown", markdown)
    assert truncated is not None
    shown = int(truncated[1])
    assert 0 < shown < CHATS
    # The blocks shown are whole, and the comment still ends with its footer.
    assert markdown.count("# team-") == shown
    assert markdown.rstrip().endswith("</sub>")
    assert markdown.count("<details>") == markdown.count("</details>") == 1


def test_5000_updates_fit_in_one_comment(tmp_path: Path) -> None:
    state_path = tmp_path / "state.json"
    first = write_manifest(tmp_path / "v1/chats.yaml", CHATS)
    plan_file = tmp_path / "v1.plan"
    done = provision(
        "plan",
        str(first),
        "--no-refresh",
        "--state",
        str(state_path),
        "--out",
        str(plan_file),
        env=base_env(tmp_path),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    # The state an apply of that plan would leave.
    store = LocalStateStore(state_path)
    state = store.read()
    for change in load_plan(plan_file).changes:
        state.put_chat(
            change.key,
            ChatRecord(
                f"19:{change.key}@thread.v2", change.chat_type, change.members, change.topic
            ),
        )
    store.write(state)

    renamed = write_manifest(tmp_path / "v2/chats.yaml", CHATS, topic="Squad {i}")
    markdown = _plan_markdown(tmp_path, renamed, state_path)
    assert len(markdown) < GITHUB_COMMENT_LIMIT
    assert _table(markdown)["`~` update"] == CHATS
    assert "**Truncated:**" in markdown
    assert re.search(r'^! +topic "Team 0" -> "Squad 0"$', markdown, flags=re.MULTILINE)


def test_a_small_plan_is_shown_whole(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "chats.yaml", 3)
    markdown = _plan_markdown(tmp_path, manifest, tmp_path / "state.json")
    assert "Truncated" not in markdown
    assert markdown.count("# team-") == 3
