"""Benchmark scripts: they print numbers and ratios against a floor measured in the same run."""
