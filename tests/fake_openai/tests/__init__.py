"""Tests of the fake Azure OpenAI itself (its wire format, webhooks and create faults), not of the app."""
