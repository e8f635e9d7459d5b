"""One error hierarchy for everything a user can cause or fix.

The core raises these; only the CLI edge (``cli/main.py``) turns them into a message and an exit
code. Anything that is *not* a ``ProvisionError`` reaching the edge is a bug in provision and
is reported as such (see ``cli.main``).
"""

from __future__ import annotations

from dataclasses import dataclass

from provisioner.redact import redact


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in user input, pointing at its source.

    ``line`` and ``col`` are 1-based; 0 means "not known" (e.g. an unreadable file).
    ``path`` is the JSON path of the offending node (``$.chats[2].members[0].user``).
    """

    file: str
    line: int
    col: int
    message: str
    path: str = "$"
    hint: str | None = None
    severity: str = "error"
    # Sorts after the file's other diagnostics (the count of those not listed).
    last: bool = False

    @property
    def location(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.col}"
        return self.file

    def __str__(self) -> str:
        text = f"{self.location}: {self.severity}: {self.message}"
        if self.hint:
            text += f"; {self.hint}"
        if self.path and self.path != "$":
            text += f" ({self.path})"
        return text

    def sort_key(self) -> tuple[str, bool, int, int, str]:
        return (self.file, self.last, self.line, self.col, self.message)


class ProvisionError(Exception):
    """Base of every user-facing error: the CLI prints ``str(err)`` and exits ``exit_code``."""

    exit_code = 1
    #: What went wrong, for the JSON form of an error (`provision schema error`).
    kind = "error"

    def __init__(self, message: str, *, hint: str | None = None, detail: str | None = None) -> None:
        # Where every diagnostic is built: a secret echoed into one (an answer quoting the
        # request) is taken out here, before it can be printed, logged or stored.
        message = redact(message)
        super().__init__(message)
        self.message = message
        # True once a JSON report on stdout already carries this error (apply's result).
        self.in_report = False
        self.hint = redact(hint) if hint is not None else None
        #: More than the one line a user needs (e.g. Azure Identity's chain of attempted
        #: credentials): printed only with ``--debug``. Never a secret.
        self.detail = redact(detail) if detail is not None else None

    def __str__(self) -> str:
        # Redacted again: a caller may have extended ``message`` after construction.
        if self.hint:
            return redact(f"{self.message}\nhint: {self.hint}")
        return redact(self.message)


class ValidationFailed(ProvisionError):
    """Manifests did not validate; carries every diagnostic found, not just the first."""

    kind = "validation"

    def __init__(self, diagnostics: list[Diagnostic], summary: str = "") -> None:
        self.diagnostics = sorted(diagnostics, key=Diagnostic.sort_key)
        self.summary = summary
        lines = [str(d) for d in self.diagnostics]
        if summary:
            lines.append(summary)
        super().__init__("\n".join(lines))


class InputError(ProvisionError):
    """A path, file or argument given by the user cannot be used (missing, unreadable...)."""

    kind = "input"


class StateError(ProvisionError):
    """The state file is missing, corrupt, foreign, from the future, or cannot be written."""

    kind = "state"


class LockError(ProvisionError):
    """The state is locked by another run."""

    kind = "lock"


class PlanError(ProvisionError):
    """A plan cannot be made (e.g. a change Graph cannot do) or a saved plan cannot be applied."""

    kind = "plan"


class AuthError(ProvisionError):
    """Credentials are missing or rejected. Messages never contain the secret itself."""

    kind = "auth"
