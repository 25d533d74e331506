"""Plumbing every layer shares: files written atomically with their checksums (`atomic`), verified
artifacts and the message that says how to rebuild one (`integrity`), devices, threads, precision
and logging of a job (`runtime`).

May import: nothing of diffguide.
"""
