"""Tests of the benchmarks' own plumbing (bench/): the queue host stand-in, the latency proxy, the webhook benchmark."""
