"""Citrex: Sei's order book today (perpetuals on Sei EVM), over REST with EIP-712 signed orders exactly as the
official client citrex-sdk signs them (signing.py); the venue (venue.py: live and paper), its REST client
(rest.py), answer parsers (api.py), and its double (exchange.py, devnode.py: `flashmm citrex-devnode`)."""
