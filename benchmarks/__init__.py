"""Benchmarks of sticky: per-operation cost and memory against a floor and alternatives.

Run ``python -m benchmarks`` (``--quick``, ``--smoke``, ``--huge``, ``--only GROUP``);
see ``benchmarks/README.md``.
"""
