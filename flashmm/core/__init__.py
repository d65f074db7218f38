"""The trading pipeline and its value types: book -> features -> strategy -> risk -> execution -> engine.

Nothing here imports research, ops, venues' implementations or the console."""
