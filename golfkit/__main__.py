"""`python -m golfkit` is the same as the `golfkit` console script."""

from golfkit.cli import main

raise SystemExit(main())
