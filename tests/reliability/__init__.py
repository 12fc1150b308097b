"""The reliability and security suite: faults, hostile input, concurrency, soak, privacy.

See docs/reliability.md for what the library promises and which test holds each promise.
"""
