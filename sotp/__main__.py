"""``python -m sotp`` runs the CLI (tests use this form so they need no installed script)."""

from sotp.cli import main

raise SystemExit(main())
