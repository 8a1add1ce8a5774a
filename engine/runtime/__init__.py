"""The trading runtime: the async engine that trades paper, shadow or live through the exchange client."""
