"""Fault suite: hostile model code, failing providers, odd user input (issue 6)."""
