"""Run the command line: ``python -m resilient demo``."""

from .cli import main

raise SystemExit(main())
