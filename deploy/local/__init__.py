"""Local development and test orchestration (used by the Makefile; never by the service itself)."""
