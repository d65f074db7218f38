"""Running FlashMM: the daemon, benchmarks, the soak, security checks."""
