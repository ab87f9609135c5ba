"""Tests of function_app.py as the host sees it: bindings, metadata, and the hardening around its triggers."""
