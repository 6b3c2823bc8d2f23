"""The pure core: spec models, strict loading with positions, planning, readiness verdicts.

Nothing here imports sqlalchemy, httpx or watchfiles, or touches files, sockets or the clock.
"""
