"""SPEC §3 key table: parse_keytable(text) -> KeyTable (table, and its fast path in fast);
keys: making and hashing keys. No file is read here.
"""
