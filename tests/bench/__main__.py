"""`python -m tests.bench [--quick]`: what `make bench` runs."""

import sys

from tests.bench.run import main

sys.exit(main())
