"""FlashMM: an AI-driven market maker for Sei's central limit order book.

Nothing under this package imports the console (`textual`): the engine runs headless, and the console in
`tui/` reads its snapshots.
"""

__version__ = "0.1.0"

# Before any hot-path module is imported: use each compiled copy only while it matches its source
# (flashmm/speedups.py).
from flashmm import speedups as _speedups  # noqa: E402

_speedups.guard()
