from __future__ import annotations

from provisioner.cli.main import main

raise SystemExit(main())
