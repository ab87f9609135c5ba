"""Whole-pipeline tests: POST to blobs through the host, with faults injected along the way."""
