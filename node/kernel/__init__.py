"""The kernel: what every layer may import and which imports nothing else of the node.

The measurement contract, the clock, geodesy and the mount pose (and the typed reports one core
step returns). Rules in docs/architecture.md, enforced by tests/test_architecture.py.
"""
