"""The trio shell: every socket, file, clock, signal and thread of the daemon.

It imports the pure core (the modules at the package root and its capability
subpackages) and is never imported by it.
"""
