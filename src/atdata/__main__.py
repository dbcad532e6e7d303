"""``python -m atdata``: the same as the ``atdata`` command."""

from atdata.cli import main

raise SystemExit(main())
