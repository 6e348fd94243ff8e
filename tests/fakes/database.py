"""Fixtures: a real PostgreSQL for the tests (filled in by the store work)."""
