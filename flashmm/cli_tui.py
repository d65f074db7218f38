"""`python -m flashmm.cli_tui` = `flashmm-tui` (for environments without the console script on PATH)."""

import sys

from flashmm.cli import tui_main

if __name__ == "__main__":
    sys.exit(tui_main())
