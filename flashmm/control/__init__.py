"""The control plane: snapshots out, commands in, one shutdown path.

- `commands.LocalControl`: the engine's control interface (snapshots with the operator's view, commands
  checked, refused with a reason or audited);
- `params`: parameters changed while trading, validated by the configuration models;
- `view`: what the operator's screen needs beyond the engine's snapshot (blotters, limits, histories);
- `codec`: snapshots and replies as JSON lines;
- `server` / `client`: the local Unix socket (0600, peer uid checked, no TCP) and its client;
- `shutdown`: `Session`, the one shutdown path for every way a process ends, and the exit codes.
"""
