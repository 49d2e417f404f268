"""captiond's sans-I/O core: fed bytes and a clock value, returns caption events.

Nothing in this package imports asyncio, websockets, threading or sockets
(docs/design.md §2). The server drives it; tests drive it with a fake clock.
"""
