"""SPEC §7, the management API's pure core: requests (bodies and queries checked),
narrowing (a key never exceeds its tenant), changes (the key a request makes) and
views (the JSON shapes of ARouter's API)."""
