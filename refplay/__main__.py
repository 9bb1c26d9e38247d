"""``python -m refplay`` is the ``refplay`` command."""

from refplay.cli import main

raise SystemExit(main())
