"""SPEC §9 usage accounting, pure: parse (Usage and UsageMeter, fed an answer as it
streams), include_usage (an OpenAI stream asked for usage, and that chunk removed),
cost (tokens × [pricing], or X-ARouter-Cost), periods (the UTC day, week and month),
book (spend per key and tenant in memory, pending and committed) and limits (the 403
``quota_exceeded``). Nothing here does I/O.
"""
