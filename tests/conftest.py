"""Shared fixtures. Each concern's tests live in their own tests/test_<concern>.py."""
