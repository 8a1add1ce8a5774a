"""Signals, scoring, confluence, confidence and the multi-timeframe combination (spec §4–§8)."""
