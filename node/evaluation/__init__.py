"""Evaluation: run scenarios through the whole pipeline in virtual time and score the tracks
against ground truth (GOSPA, track continuity, classification, Remote ID binding, CPU time).

`cuas-node eval SCENARIO` is the command; `cuas_node.evaluation.cli.run_eval` is the entry point for
code and tests. See docs/evaluation.md for the metric definitions.
"""
