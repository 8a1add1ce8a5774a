"""ENYGMA trading engine: market data, indicators, scoring, gates, risk, orders, accounting, backtest."""
