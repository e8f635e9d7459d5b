"""Helpers the tests share (tests/ is on sys.path, so they import as ``lib.<module>``).

- ``cli``: ``run(capsys, *args)``, the CLI in this process: (exit code, stdout, stderr).
- ``tokens``: JWTs with the claims a test needs (``jwt``, ``tenant_token``, ``b64``).
- ``clock``: ``FakeClock``, a clock and a sleep that only move when a test or a wait moves them.
- ``hostile_server``: an HTTP server that answers what Graph never should.
- ``lifecycle_support``: users, chats and a client for the emulator's directory.
- ``pipeline_support``: the example pipelines' steps run with bash, as their runners would.
- ``state_contract``: the tests every ``StateStore`` must pass.
- ``fs_helpers``: read-only folders, snapshots of a folder, a ``.netrc`` with a ``default`` entry.
- ``azurite_support``: Azurite installed and started for the azblob:// tests.
- ``wheelhouse``: wheels of the running environment, for offline pip installs.
- ``fault_points``: stop or fail the Nth durable write or Graph request (crash points).
- ``state_strategies``: Hypothesis strategies for state records.
- ``pacing``: ``fast_pacing(monkeypatch)``, Graph's documented rates raised for tests that are
  not about pacing.
"""
