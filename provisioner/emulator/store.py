"""Persistence of the emulated tenant: an atomic snapshot plus an fsync'ed journal.

A change is durable before its response is sent (Graph never forgets a chat it answered
201 for; a client killed mid-run must find its chats on the next run, even when the emulator
ran inside the killed process). Rewriting the whole snapshot per change would be O(chats) per
request, so each change appends one JSON line to ``<data>.journal`` (write + fsync), and the
snapshot ``<data>`` is rewritten atomically (temp file in the same directory, fsync,
``os.replace``, mode 0600) every ``COMPACT_EVERY`` changes and when the server stops. The
snapshot records the last journal sequence number it contains, so a crash between the two
steps replays nothing twice; a torn last journal line (crash mid-write) is ignored.

A ``<data>.lock`` file held with ``flock`` keeps two emulators off the same data.
The store is not thread-safe on its own: the tenant calls it under its lock.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from provisioner.emulator.errors import EmulatorError
from provisioner.fsutil import write_atomic

try:  # POSIX only; elsewhere two emulators on one file are not prevented.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

FORMAT = "provision-emulator"
VERSION = 1
COMPACT_EVERY = 1000


@dataclass
class Loaded:
    tenant_id: str | None = None
    chats: dict[str, dict[str, Any]] = field(default_factory=dict)  # by chat id, last wins
    users: list[dict[str, Any]] = field(default_factory=list)


class Store:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.journal_path = self.path.with_name(self.path.name + ".journal")
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._journal: IO[bytes] | None = None
        self._lock_fd: int | None = None
        self._seq = 0
        self._pending = 0  # journal entries not yet in the snapshot

    # -- opening -------------------------------------------------------------------------
    def open(self) -> Loaded:
        """Lock the data, load snapshot + journal. Raises ``EmulatorError`` if unusable."""
        self._acquire_lock()
        try:
            loaded = self._load()
            self._journal = open(self.journal_path, "ab")  # noqa: SIM115 (kept open)
            with contextlib.suppress(OSError):
                os.chmod(self.journal_path, 0o600)
        except BaseException:
            self._release_lock()
            raise
        return loaded

    def _acquire_lock(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise EmulatorError(f"cannot use emulator data {self.path}: {exc.strerror}") from exc
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
                os.close(fd)
                raise EmulatorError(
                    f"emulator data {self.path} is in use by another emulator (pid {holder})",
                    hint="stop the other emulator, or give this one another --data file",
                ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    def _corrupt(self, what: str) -> EmulatorError:
        return EmulatorError(
            f"emulator data {what} is corrupt",
            hint=f"move {self.path} (and {self.journal_path.name}) aside to start an empty tenant",
        )

    def _load(self) -> Loaded:
        loaded = Loaded()
        snapshot_seq = 0
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = None
        except (OSError, UnicodeDecodeError) as exc:
            raise EmulatorError(f"cannot read emulator data {self.path}: {exc}") from exc
        if text is not None:
            try:
                data = json.loads(text)
            except ValueError as exc:
                raise self._corrupt(f"{self.path} (invalid JSON: {exc})") from None
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise self._corrupt(f"{self.path} (not a provision emulator data file)")
            if data.get("version") != VERSION:
                raise EmulatorError(
                    f"emulator data {self.path} has version {data.get('version')!r}; "
                    f"this provision reads version {VERSION}"
                )
            chats, users, seq = data.get("chats"), data.get("users"), data.get("journalSeq")
            tenant_id = data.get("tenantId")
            if not (
                isinstance(chats, list)
                and isinstance(users, list)
                and isinstance(seq, int)
                and isinstance(tenant_id, str)
                and all(isinstance(c, dict) and isinstance(c.get("id"), str) for c in chats)
            ):
                raise self._corrupt(f"{self.path} (unexpected structure)")
            loaded.tenant_id = tenant_id
            loaded.chats = {c["id"]: c for c in chats}
            loaded.users = list(users)
            snapshot_seq = seq
        self._seq = snapshot_seq
        for number, entry in self._journal_entries():
            seq = entry.get("seq")
            if not isinstance(seq, int):
                raise self._corrupt(f"{self.journal_path} (line {number}: no sequence number)")
            self._seq = max(self._seq, seq)
            if seq <= snapshot_seq:
                continue
            self._pending += 1
            if isinstance(entry.get("chat"), dict) and isinstance(entry["chat"].get("id"), str):
                loaded.chats[entry["chat"]["id"]] = entry["chat"]
            elif isinstance(entry.get("user"), dict):
                loaded.users.append(entry["user"])
            else:
                raise self._corrupt(f"{self.journal_path} (line {number}: unknown entry)")
        return loaded

    def _journal_entries(self) -> list[tuple[int, dict[str, Any]]]:
        try:
            raw = self.journal_path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise EmulatorError(f"cannot read {self.journal_path}: {exc.strerror}") from exc
        lines = raw.split(b"\n")
        entries = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                if number == len(lines):  # the last line has no newline: a torn write
                    break
                raise self._corrupt(f"{self.journal_path} (line {number})") from None
            if not isinstance(entry, dict):
                raise self._corrupt(f"{self.journal_path} (line {number})")
            entries.append((number, entry))
        return entries

    # -- writing -------------------------------------------------------------------------
    @property
    def has_pending(self) -> bool:
        return self._pending > 0

    @property
    def needs_compaction(self) -> bool:
        return self._pending >= COMPACT_EVERY

    def append(self, kind: str, record: dict[str, Any]) -> None:
        """Make one change durable: ``kind`` is ``chat`` (the whole chat) or ``user``."""
        if self._journal is None:
            raise RuntimeError("store is not open")
        self._seq += 1
        line = json.dumps({"seq": self._seq, kind: record}, separators=(",", ":"))
        self._journal.write(line.encode("utf-8") + b"\n")
        self._journal.flush()
        os.fsync(self._journal.fileno())
        self._pending += 1

    def compact(
        self, tenant_id: str, chats: list[dict[str, Any]], users: list[dict[str, Any]]
    ) -> None:
        """Write the whole tenant as the snapshot (atomically), then empty the journal."""
        data = {
            "format": FORMAT,
            "version": VERSION,
            "tenantId": tenant_id,
            "journalSeq": self._seq,
            "chats": chats,
            "users": users,
        }
        write_atomic(self.path, json.dumps(data, separators=(",", ":")).encode("utf-8"))
        if self._journal is not None:
            self._journal.truncate(0)
            self._journal.flush()
            os.fsync(self._journal.fileno())
        self._pending = 0

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        self._release_lock()
