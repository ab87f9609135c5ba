"""Test and demo support: Azurite, and a stand-in for the Functions host's invocation path."""
