"""autoresearch: an engine for autonomous research loops (the ratchet)."""

__version__ = "0.1.0"
