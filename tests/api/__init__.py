"""Tests of shared/api/: the HTTP functions (start, status, answers, callers, webhooks)."""
