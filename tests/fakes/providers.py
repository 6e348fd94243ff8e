"""Fixtures: fake providers (filled in by the simulator work)."""
