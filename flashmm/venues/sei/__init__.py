"""Sei x/dex venue support (protocol schema in `schema`, offline transaction building in `tx`).

Sei's native order book `x/dex` was deprecated in sei-chain v5.6.0 and removed in v5.8.0; this package
speaks the x/dex protocol as of v5.5.x, for networks that still run it (a local sei-chain <= v5.5.5, a
fork, or the project's own node double). See ../shared/SEI.md for the protocol facts.
"""
