"""Market data: candle files, candle series with gap detection, timeframe aggregation."""
