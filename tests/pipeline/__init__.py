"""Tests of shared/pipeline/: the watcher, discovery, fan-out, persist step and events."""
