"""`cuas-node eval SCENARIO [--seeds N] [--seed S]`: score the whole pipeline on a scenario.

`run_eval` returns the summary as a dict (tests and scripts use it); `main` prints it as JSON.
Everything in the output is a function of the scenario and the seeds except `cpu_per_scan_ms`,
which is measured CPU time and varies with the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from cuas_node.drivers.sim.scenario import Scenario, load_scenario
from cuas_node.evaluation.metrics import aggregate, score_run
from cuas_node.evaluation.published import aggregate_published
from cuas_node.evaluation.runner import run_scenario


def remote_ids_of(scenario: Scenario) -> dict[str, str]:
    """Truth target id → the UAS id it broadcasts."""
    return {t.id: t.remote_id.uas_id for t in scenario.targets if t.remote_id is not None}


def bearing_origin(scenario: Scenario) -> tuple[float, float, float]:
    """Where bearings are measured from: the first acoustic array, else the node."""
    for spec in scenario.sensors:
        if spec.kind == "acoustic-array":
            return spec.mount.offset_m
    return (0.0, 0.0, 0.0)


def evaluate_scenario(
    scenario: Scenario, seeds: Sequence[int], config_overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Run and score `scenario` once per seed; the summary aggregates over all of them."""
    c_m = float(getattr(scenario, "gospa_c_m", 100.0))
    runs = []
    skipped: set[str] = set()
    errors: dict[str, str] = {}
    alert_events = 0
    published = []
    for seed in seeds:
        result = run_scenario(scenario, seed, config_overrides)
        alert_events += int(result.counters.get("alerts", 0))
        published.append(result.published)
        skipped.update(result.skipped_sensors)
        errors.update(result.sensor_errors)
        score = score_run(
            result.steps,
            duration_s=scenario.duration_s,
            c_m=c_m,
            remote_ids=remote_ids_of(scenario),
            bearing_origin=bearing_origin(scenario),
        )
        score.cpu_per_scan_s = result.cpu_per_scan_s
        runs.append(score)
    summary: dict[str, Any] = {
        "scenario": scenario.name,
        "seeds": list(seeds),
        "duration_s": scenario.duration_s,
        "targets": len(scenario.targets),
    }
    summary.update(aggregate(runs, c_m))
    summary["alert_events"] = alert_events
    summary.update(aggregate_published(published))
    if skipped:
        summary["skipped_sensors"] = sorted(skipped)
    if errors:
        summary["sensor_errors"] = dict(sorted(errors.items()))
    return summary


def run_eval(scenario: str, seeds: int = 1, seed0: int | None = None) -> dict[str, Any]:
    """Evaluate a built-in scenario (by name) or a scenario file on `seeds` consecutive seeds
    starting at `seed0` (default: the scenario's own seed)."""
    if seeds < 1:
        raise ValueError("seeds must be at least 1")
    sc = load_scenario(scenario)
    first = sc.seed if seed0 is None else seed0
    return evaluate_scenario(sc, [first + k for k in range(seeds)])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `eval` subcommand's arguments (shared by node/cli.py and `python -m`)."""
    parser.add_argument("scenario", help="built-in scenario name (e.g. demo) or a scenario TOML file")
    parser.add_argument("--seeds", type=int, default=1, help="number of seeds to run (default 1)")
    parser.add_argument("--seed", type=int, help="first seed (default: the scenario's seed)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cuas-node eval", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    return cmd_eval(args)


def cmd_eval(args: argparse.Namespace) -> int:
    """Print the evaluation summary as one JSON object (exit 2 on bad arguments)."""
    if args.seeds < 1:
        print("cuas-node eval: --seeds must be at least 1", file=sys.stderr)
        return 2
    summary = run_eval(args.scenario, args.seeds, args.seed)
    sys.stdout.write(json.dumps(summary, indent=2, sort_keys=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
