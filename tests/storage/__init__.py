"""Tests of shared/storage/: messages, names, links, and blobs written once."""
