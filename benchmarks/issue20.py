"""The faults of issue 20 (the second reliability pass) for RELIABILITY.md: what each was,
how it is tested, what it did before and after, with the figures of the mixed soak
(``tests/soak/mixed_soak.py``) where the soak injects it."""

from __future__ import annotations

from typing import Any

# (fault, how it is tested, before, after, the mixed soak's kind or "")
ROWS: list[tuple[str, str, str, str, str]] = [
    (
        "1. Opaque token (no `tid`), state used in another tenant",
        "`tests/acceptance/test_opaque_tenant.py`; mixed soak `tenant`",
        "every chat read as 404, created in the other tenant and again back home "
        "(issue: 5 duplicates for 5 chats; the mixed soak on the code before issue 20, seeds "
        "401-403: 126 chats made in the other tenant in 6 rounds, and made again at home)",
        "stops before any change, naming both tenants (the soak: 0 chats made elsewhere)",
        "tenant",
    ),
    (
        "2. One flipped bit in the middle of the journal",
        "`tests/states/test_journal_damage.py` (payload, length, checksum, header; repair "
        "restores; damage beyond one bit is reported, the rest kept), `tests/state_contract.py` "
        "(local file and Azure Blob); mixed soak `bitflip`",
        "read as a torn tail: every later record silently dropped (a flip in record 2 of 5 "
        "left 1 record; the soak before, seeds 401-403: 4 of 6 flips read on as a torn tail, "
        "62 journaled records lost over the flip and zero-tail rounds)",
        'refused ("damaged ... N good record(s) follow"), hint `provision state repair`, which '
        "restores a one-bit flip exactly from the CRC-32 and keeps every other readable record",
        "bitflip",
    ),
    (
        "2. Zero-filled journal tail (power-loss leftover)",
        "`tests/states/test_journal_damage.py`, `tests/state_contract.py`; mixed soak `zerotail`",
        'refused as corruption ("a record is not JSON", hint: move it away)',
        "a torn tail: dropped, every record before it kept",
        "zerotail",
    ),
    (
        "2. Truncated state file + journal",
        "`tests/states/test_journal_damage.py::test_a_truncated_state_with_a_journal_has_a_way_out`",
        "dead end: the hint said to copy the backup back, then the journal was refused (it "
        'continues a newer serial) with "check ... before moving the journal away"',
        "hint `provision state repair`: backup + every complete chat line of the cut file + the "
        "journal; chats after the cut kept from the backup and marked protected",
        "",
    ),
    (
        "2. Torn tail, then a crash after the final state write",
        "`tests/states/test_journal_damage.py::test_torn_tail_then_a_crash_after_the_state_write"
        "_has_a_way_out` (an `os.write`/`fdatasync` fault shim, no LD_PRELOAD)",
        'dead end: "the journal continues serial S, the state is at S+1"',
        "the final write first appends a marker declaring the torn tail (read on normally); if "
        "that fails too, `state repair` sees the state absorbed the journal",
        "",
    ),
    (
        "3. Host clock +-10 min off Graph's, and a jump between a killed run and its rerun",
        "`tests/apply/test_clocks.py`, `tests/apply/test_apply_kill.py` (killed applies with "
        "the host clock 10 min off; `kill_soak.py --clock-offset`); mixed soak `clock` (Graph's "
        "`Date` and `createdDateTime` shifted, reversed before the rerun)",
        "5 duplicates for 10 chats (ahead); 4 of 4 duplicated after a jump (the soak before, "
        "clock rounds alone, seeds 401-403: 9 duplicates in 12 rounds)",
        "ambiguous creations matched on Graph's clock (its `Date`), never the host's",
        "clock",
    ),
    (
        "4. `--consistency-window nan` (flag or variable)",
        "`tests/cli/test_cli_numbers.py`",
        "accepted; the window turned off (6 duplicates for 3 chats)",
        "one validator for every number flag and variable: finite, in a stated range",
        "",
    ),
    (
        "5. Azure Blob lease broken (`force-unlock`, portal) during a run",
        "`tests/apply/test_apply_lease.py` (Azurite + emulator); mixed soak `lease` (the "
        "taking-over run starts at once)",
        "the old run kept creating until its next renewal (the test: all 9 chats created, 7 "
        "after the break); issue: duplicates in 2 of 3 trials (the soak before: 3 duplicates "
        "in 6 breaks)",
        "a synchronous lease renewal before each `POST /chats` (after the intent is durable): "
        "0 chats created after the break",
        "lease",
    ),
    (
        "6. `Retry-After: 99999`",
        "`tests/graph/test_retry_after_cap.py`; mixed soak `retryafter` (503s with it)",
        "one request failed but all writes paused that long; `plan` hung on a throttled "
        "`$batch` item (the soak before: 2 of 6 rounds ran past 60 s and were killed)",
        "one answer pauses a scope for 120 s at most; a longer one fails that request",
        "retryafter",
    ),
    (
        "7. Secrets echoed in response headers (and bodies), sent on after a redirect",
        "`tests/acceptance/test_secrets_in_headers.py`",
        "the bearer token printed from an echoed `request-id`; `IDENTITY_HEADER` printed and "
        "forwarded to another host",
        "every known secret redacted wherever it appears; no credential across hosts",
        "",
    ),
    (
        "8. Crashes and hangs (case-changed ids, non-Latin-1 token, unknown member types, "
        "repeated pages, FIFOs, `/dev/zero`, blank topics, `--max-rps 1e-300`)",
        "`tests/acceptance/test_crashes_and_hangs.py`, `tests/cli/test_cli_numbers.py`",
        "KeyError, internal errors, hangs, 3 chats became 6",
        "clear one-line errors; ids compared case-folded",
        "",
    ),
    (
        "9. Honest reports (failed final write; reads during an apply)",
        "`tests/acceptance/test_honest_reports.py`",
        '"nothing was changed" after 25 chats were created; 1 read in 99 failed',
        "the report says what changed before the failed write; reads see a consistent view",
        "",
    ),
    (
        "10. Graph queries the documentation does not list (`$filter` on `topic`, `chatType`)",
        "`tests/operations/test_export.py`, `tests/graph/test_documented_responses.py`",
        "`export --type` had no fallback",
        "every undocumented filter behind a fallback",
        "",
    ),
]


def table(mixed: dict[str, Any] | None) -> list[str]:
    """The section's lines; ``mixed``: the mixed soak's JSON figures (None: not run)."""
    by_kind = (mixed or {}).get("by_kind", {})
    lines = [
        "## The faults of issue 20",
        "",
        "| fault | how it is tested | before | after |",
        "| --- | --- | --- | --- |",
    ]
    for fault, how, before, after, kind in ROWS:
        if kind and mixed:
            after += f" (mixed soak: {by_kind.get(kind, 0)} injected)"
        lines.append(f"| {fault} | {how} | {before} | {after} |")
    if mixed:
        lines += [
            "",
            f"The mixed soak (seeds {', '.join(str(s) for s in mixed['seeds'])}, "
            f"{mixed['runs']} runs, {mixed['faults']} faults) ended with "
            f"{mixed['duplicates']} duplicates, {mixed['lost']} lost chats, "
            f"{mixed['lost_records']} lost journal records and {mixed.get('crashes', 0)} runs "
            f"that crashed or hung ({mixed.get('hangs', 0)} hung), counted from the emulator's "
            "side.",
        ]
    return lines
