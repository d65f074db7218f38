"""`python -m flashmm.compile build|status`: compile the hot path from its own source (flashmm/speedups.py)."""

import sys

from flashmm.speedups import main

if __name__ == "__main__":
    sys.exit(main())
