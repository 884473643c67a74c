"""The core step: one single-threaded function of (time, measurements) that the runtime, replay,
evaluation, golden tests and benchmarks all drive (`step.NodeCore`). It owns the reorder window,
the publication rate limit and the zone alert lifecycle around fusion."""
