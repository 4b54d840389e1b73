"""``python -m deepstrf`` runs the command line."""

from deepstrf.cli import main

raise SystemExit(main())
