"""Recorded market data: readers that turn files into one time-ordered columnar event array."""
