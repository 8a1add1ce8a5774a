"""Backtests run the live strategy code over candle files with the spec's §10.11 execution model."""
