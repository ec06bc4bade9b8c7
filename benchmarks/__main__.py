"""``python -m benchmarks``: see ``benchmarks/README.md``."""

from benchmarks.harness import main

raise SystemExit(main())
