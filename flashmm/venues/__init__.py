"""Venues: the engine talks to every market through `flashmm.venues.base.Venue`."""
