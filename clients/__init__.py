"""Client side of the captiond protocol: a library and the `captiond` client commands."""
