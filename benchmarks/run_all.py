"""Run every benchmark (except the Stone Soup comparison) and write docs/performance.md.

Each benchmark runs as its own process and prints `figure: <name> = <value> <unit>` lines; this
script prints them again as they come, takes the median of each figure over several runs (the
quick ones are run `--repeat` times here; latency, resources and start-up run several times
internally and report their own medians), and writes the table with the machine and the date.
Budget: about 11 minutes on a 2-core x86 machine (< 15 min required); see docs/performance.md.

The tracker-vs-Stone-Soup comparison (benchmarks/tracker_vs_stonesoup.py) and the false tracks an
hour in clutter alone (benchmarks/false_track_rate.py) need the `bench` extra and take long: run
them on their own.

A benchmark with a `section` (the standard outputs) gets a section of its own, with its own date
and machine note, and can be rerun alone: `--only outputs.py` rewrites just that section of the
existing file (the rest keeps its figures and date).

Run: `.venv/bin/python benchmarks/run_all.py [--quick] [--only SCRIPT] [--out docs/performance.md]`
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURE = re.compile(r"^figure: (\S+) = (\S+) ?(.*)$")


@dataclass(frozen=True)
class Bench:
    script: str
    args: tuple[str, ...]
    quick_args: tuple[str, ...]
    repeat: int  # runs here; the figure is the median over them
    what: str
    section: str | None = None  # a section of its own (with its explanation), else the main table


BENCHES = (
    Bench("radar_parse.py", (), ("--frames", "200", "--repeat", "1"), 3, "radar: TI data UART → detections"),
    Bench("acoustic.py", (), (), 3, "acoustic: framed PCM → bearings, speed vs real time"),
    Bench("startup.py", ("--runs", "5"), ("--runs", "2"), 1, "start-up to READY=1"),
    Bench(
        "latency.py",
        ("--runs", "3", "--duration", "20"),
        ("--runs", "1", "--duration", "8"),
        1,
        "pty → subscriber",
    ),
    Bench("spool_wal.py", (), ("--messages", "500", "--duration", "5"), 1, "the write-ahead spool's cost"),
    Bench("rid_flood.py", (), ("--seconds", "4"), 3, "1,000 spoofed Remote ID broadcasters, 1 radar target"),
    Bench(
        "resources.py",
        ("--runs", "3", "--window", "15"),
        ("--runs", "1", "--window", "6"),
        1,
        "CPU and memory at real-time speed",
    ),
    Bench(
        "web_clients.py",
        ("--runs", "3", "--window", "15"),
        ("--runs", "1", "--window", "6"),
        1,
        "the live view with 5 clients (swarm-20)",
    ),
    Bench(
        "outputs.py",
        ("--runs", "3", "--window", "15"),
        ("--runs", "1", "--window", "6"),
        1,
        "standard outputs (CoT, SAPIENT) at swarm-20",
        section="Standard outputs",
    ),
)

# What the figures of a bench with a section mean, written under its table.
SECTION_TEXT = {
    "Standard outputs": """\
What the Cursor-on-Target, SAPIENT and Home Assistant outputs ([outputs.md](outputs.md)) cost at
`swarm-20` (20 drones), from two sides:

- In process, precise: one `swarm-20` run's track reports (the real drivers and fusion in virtual
  time, as `cuas-node eval` runs them) through one output's mapping and transport to a loopback
  receiver, as its thread does; CPU time over the scenario's duration, i.e. the share of one core
  the output costs at real-time speed. `cot_cpu_swarm_20` (UDP; `cot_events_per_s_swarm_20`
  events sent, 1 per track per second), `sapient_cpu_swarm_20` (protobuf, a loopback socket, its
  detection timing rules acting as at real-time speed; `sapient_reports_per_s_swarm_20` reports
  sent), `homeassistant_cpu_swarm_20` (each `tracks` document parsed, folded into the Home
  Assistant state, the state document encoded; `homeassistant_states_per_s_swarm_20` state
  documents that changed, before the output's rate limit). `output_submit_us`: what the fusion
  thread pays per step and output (a queue append).
- The whole node: `cuas-node sim swarm-20 --speed 1` (simulated sensors in the node's process, as
  `cpu_swarm_20_with_sim`) with one CoT output (UDP to a loopback receiver,
  `cpu_swarm_20_with_sim_and_cot`) and with all three outputs: CoT, SAPIENT (TCP to a loopback
  peer that accepts the registration) and Home Assistant discovery on the node's broker
  (`cpu_swarm_20_with_sim_all_outputs`); the runs without, with CoT and with all are interleaved.
  `cot_overhead_swarm_20` and `outputs_overhead_swarm_20`
  are their differences from the runs without outputs: differences of whole-process figures that
  vary by several % of a core between runs on a shared machine (see the runs in the notes), so
  read them as "of the order of"; the in-process figures are the outputs' own cost.

The whole-node figures are medians over the interleaved runs (`--runs`); the in-process ones come
from one pass over the scenario's reports.""",
}

# name → (target text, predicate) for the figures the issue sets targets on.
TARGETS: dict[str, tuple[str, Callable[[float], bool]]] = {
    "latency_pipeline_p99": ("< 20 ms", lambda v: v < 20.0),
    "cpu_swarm_20_with_sim": ("< 25 % of a core", lambda v: v < 25.0),
    "rss_swarm_20_with_sim": ("< 150 MB", lambda v: v < 150.0),
    "startup_to_ready": ("< 2 s", lambda v: v < 2.0),
}


def internal_runs(bench: Bench, quick: bool) -> int:
    """Runs behind one reported figure of a benchmark that takes its own median (`--runs N`)."""
    args = bench.quick_args if quick else bench.args
    return int(args[args.index("--runs") + 1]) if "--runs" in args else 1


def fmt(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        info = dict(
            (k.strip().lower(), v.strip())
            for k, _, v in (line.partition(":") for line in Path("/proc/cpuinfo").read_text().splitlines())
        )
        # x86 says "model name"; a Pi says "Model" (Raspberry Pi 5 Model B Rev 1.0), ARM also "Hardware".
        pi_model = info.get("model", "")
        model = info.get("model name") or ("" if pi_model.isdigit() else pi_model) or model
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.1f} GB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{model}, {os.cpu_count()} cores{mem}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}"
    )


def run(bench: Bench, quick: bool) -> tuple[dict[str, list[float]], dict[str, str], list[str]]:
    values: dict[str, list[float]] = {}
    units: dict[str, str] = {}
    notes: list[str] = []
    args = bench.quick_args if quick else bench.args
    for _ in range(1 if quick else bench.repeat):
        cmd = [sys.executable, str(ROOT / "benchmarks" / bench.script), *args]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            notes.append(f"{bench.script} failed ({proc.returncode}): {proc.stderr.strip()[-300:]}")
            continue
        for line in proc.stdout.splitlines():
            m = FIGURE.match(line.strip())
            if m:
                print(f"  ({bench.script}) {line.strip()}", flush=True)
                values.setdefault(m[1], []).append(float(m[2]))
                units[m[1]] = m[3]
            elif line.startswith(("skipped:", "note:")) and line not in notes:
                print(line, flush=True)
                notes.append(line.removeprefix("note: "))
    return values, units, notes


Row = tuple[str, str, str, str, str]


def table(rows: list[Row]) -> str:
    lines = ["| benchmark | figure | median | target | runs |", "|---|---|---|---|---|"]
    return "\n".join(lines + [f"| {a} | `{b}` | {c} | {d} | {e} |" for a, b, c, d, e in rows])


def render_section(bench: Bench, rows: list[Row], notes: list[str], took_s: float, quick: bool) -> str:
    """`## <section>`: how it was run, on what, when, its figures and what they mean."""
    args = " ".join(bench.quick_args if quick else bench.args)
    loads = os.getloadavg()
    load = " / ".join(f"{v:.1f}" for v in loads)
    busy = loads[1] > 0.5 * (os.cpu_count() or 1)  # 5-minute average: the bench's own runs
    shared = ": the machine was busy with other work, so the whole-node figures are noisy" if busy else ""
    note_text = "".join(f"- {n}\n" for n in notes) or "- none\n"
    return (
        f"## {bench.section}\n\n"
        f"Measured by `benchmarks/{bench.script} {args}`, run by `benchmarks/run_all.py` (alone: "
        f"`nice -n 10 .venv/bin/python benchmarks/run_all.py --only {bench.script}`).\n\n"
        f"- Machine: {machine()}; load average {load} (1/5/15 min) when it finished{shared}\n"
        f"- Date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}"
        f"{' (quick mode: fewer, shorter runs)' if quick else ''}\n"
        f"- Took: {took_s / 60:.1f} min\n\n| figure | value |\n|---|---|\n"
        + "".join(f"| `{name}` | {value} |\n" for _, name, value, _, _ in rows)
        + f"\nNotes:\n{note_text}\n"
        f"{SECTION_TEXT.get(bench.section or '', '')}\n\n"
    )


def render(rows: list[Row], notes: list[str], sections: str, took_s: float, quick: bool) -> str:
    note_text = "".join(f"- {n}\n" for n in notes) or "- none\n"
    mode = " (quick mode: fewer, shorter runs)" if quick else ""
    return TEMPLATE.format(
        machine=machine(),
        date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        table=table(rows),
        notes=note_text,
        sections=sections,
        took=f"{took_s / 60:.1f}",
        mode=mode,
    )


def replace_section(text: str, title: str, new: str) -> str:
    """`text` with its `## <title>` section (up to the next `## `) replaced by `new`, or `new`
    inserted before `## What each figure means` when it has none yet."""
    found = re.search(rf"^## {re.escape(title)}\n.*?(?=^## )", text, flags=re.M | re.S)
    if found:
        return text[: found.start()] + new + text[found.end() :]
    anchor = text.index("## What each figure means")
    return text[:anchor] + new + text[anchor:]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one short run of each (a smoke test)")
    ap.add_argument(
        "--only", action="append", default=[], help="run only this bench (one with its own section)"
    )
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "performance.md")
    args = ap.parse_args()
    benches = [b for b in BENCHES if not args.only or b.script in args.only]
    alone = [b.script for b in benches if b.section is None]
    if args.only and (len(benches) != len(args.only) or alone):
        known = ", ".join(b.script for b in BENCHES if b.section)
        ap.error(f"--only takes benches that have a section of their own: {known}")
    started = time.monotonic()
    rows: list[Row] = []
    notes: list[str] = []
    sections: dict[str, str] = {}
    for bench in benches:
        bench_started = time.monotonic()
        values, units, bench_notes = run(bench, args.quick)
        bench_rows: list[Row] = []
        for name, vs in values.items():
            value = statistics.median(vs)
            text = f"{fmt(value)} {units[name]}".strip()
            target = ""
            if name in TARGETS:
                goal, ok = TARGETS[name]
                target = f"{goal}: {'met' if ok(value) else 'NOT met'}"
            print(f"figure: {name} = {text}", flush=True)
            bench_rows.append(
                (bench.what, name, text, target, str(len(vs) * internal_runs(bench, args.quick)))
            )
        if bench.section is None:
            rows += bench_rows
            notes += bench_notes
        else:
            took = time.monotonic() - bench_started
            sections[bench.section] = render_section(bench, bench_rows, bench_notes, took, args.quick)
    took = time.monotonic() - started
    if args.only:
        text = args.out.read_text()
        for title, section in sections.items():
            text = replace_section(text, title, section)
    else:
        text = render(rows, notes, "".join(sections.values()), took, args.quick)
    args.out.write_text(text)
    print(f"wrote {args.out} ({took / 60:.1f} min)")
    return 0


TEMPLATE = """# Performance

Written by `benchmarks/run_all.py` (do not edit by hand: rerun it). Every figure is the median over
several runs; timing figures on a shared machine are noisy, so compare them as orders of magnitude
and against the targets, not to the last digit.

- Machine: {machine}
- Date: {date}{mode}
- Took: {took} min

{table}

Notes:
{notes}
{sections}## What each figure means

- `latency_pipeline_p50/p99`: from the last byte of a TI radar frame written into the pty to the
  `tracks` message carrying the track it updated arriving at an MQTT subscriber on the local
  mosquitto. The node is a real `cuas-node run` process; the config sets `fusion.reorder_window_s
  = 0` and `mqtt.tracks_max_rate_hz = 50` so the figure is the code path (pty, pyserial, parser,
  clustering, queue, fusion, JSON, paho, broker). Target: p99 < 20 ms.
- `latency_default_p50/p99`: the same with the shipped settings: the 0.1 s reorder window (fusing
  in capture-time order across sensors) and the 5 Hz cap on `tracks` messages add ~100-300 ms by
  design; lower both in the config when latency matters more than ordering.
- `cpu_<scenario>_with_sim`, `rss_<scenario>_with_sim`: CPU time per wall second (100 % = one
  core) and peak resident memory of `cuas-node sim <scenario> --speed 1` after a 5 s warm-up.
  `sim` runs the simulated sensors in the node's process, so these are upper bounds for the node.
  Targets (`swarm-20`): < 25 % of a core, < 150 MB.
- `web_*`, `cpu_swarm_20_web_*` (benchmarks/web_clients.py): the live view ([web.md](web.md)) at
  `swarm-20` with 5 live-update clients reading `/api/events` (what 5 open pages receive), against
  the same run with `[web]` off. `web_cpu_added_5_clients` is the difference of the two
  whole-process medians and lies within their noise on a shared machine;
  `web_thread_cpu_5_clients` is the web server thread's own CPU clock (health's `web.cpu_s`), the
  part that 5 pages cost; fusion's thread only hands over the bytes of each message.
  `web_bytes_per_client`: the live stream's rate per page.
- `startup_to_ready`: launching `cuas-node run` (radar and GPS on ptys, broker unreachable) to
  the systemd `READY=1` datagram on `NOTIFY_SOCKET`. Target: < 2 s.
- `radar_*` (benchmarks/radar_parse.py): one core turning TI data-UART bytes into detections, 200
  points per frame; `radar_realtime_ratio` is how many 20 Hz radars one core could serve.
- `acoustic_speed_*` (benchmarks/acoustic.py): times faster than real time for the array's
  detection and direction finding.
- `wal_*`, `memory_*` (benchmarks/spool_wal.py): the publisher's write-ahead spool against a
  local mosquitto, QoS 1. `wal_throughput`/`memory_throughput`: `tracks` messages (3 tracks,
  ~1.4 KB) per second to the last PUBACK, with the spool and without a spool directory;
  `wal_fsyncs_per_s`, `wal_appended_bytes_per_s`, `wal_latency_p50/p99` (`publish_tracks` to a
  local subscriber) at the node's normal rate (5 Hz tracks + 0.2 Hz health);
  `wal_device_kib_per_s` what the block device wrote meanwhile (data, journal, metadata, and
  anything else on it; `memory_device_kib_per_s` is the baseline without a spool). The spool is
  synced once a second, not per message (docs/reliability.md): the SD card wear that matters for a
  node running for years; use a high-endurance card or an SSD all the same.
- `rid_flood_*` (benchmarks/rid_flood.py): the core step (`NodeCore.step`) while 1,000 fake
  Remote ID broadcasters (each at 1 Hz on two carriers: 2,000 reports/s) fill the air and a
  radar sees one real drone. `rid_flood_step_mean/p95`: CPU per 0.1 s step; `_vs_clean`: the
  same as a ratio to the run without fakes; `rid_flood_confirm_delay`: how much later than
  without fakes the real drone's track is confirmed (0: on time). See docs/mqtt.md, Remote ID
  claims.
- The standard outputs' figures: their own section above.
- The tracker comparison with Stone Soup (benchmarks/tracker_vs_stonesoup.py) and the false
  tracks an hour in clutter alone (benchmarks/false_track_rate.py) are not part of this run (they
  need the `bench` extra and take long); see their own output and docs/evaluation.md.

## Running them on a Raspberry Pi 4 or 5

```sh
sudo apt-get install -y mosquitto        # the latency and resources benchmarks start their own broker
./scripts/test.sh                          # creates .venv with the node installed
sudo systemctl stop cuas-node              # the benchmarks must not share the CPU with a live node
.venv/bin/python benchmarks/run_all.py     # about 10 min on a Pi 5, 15 on a Pi 4
```

Run it on the Pi's own console or over SSH with nothing else busy, on the power supply the node
will use (an under-volted Pi throttles: check `vcgencmd get_throttled` prints `0x0`) and with the
case and cooling of the deployment (a Pi 4 without a heatsink throttles after a few minutes of
load). `--quick` gives a smoke test in two minutes.

## How the figures here translate to a Pi

Rough single-thread ratios against a current x86 laptop or server core, for this kind of code
(Python, numpy on small arrays, JSON, syscalls): a Pi 5 (Cortex-A76, 2.4 GHz) is about 2-3x slower,
a Pi 4 (Cortex-A72, 1.5-1.8 GHz) about 4-6x slower. So:

- CPU shares scale by that factor (a figure of 5 % here is ~15 % of one Pi 5 core, ~25 % of a Pi 4
  core); the Pi has four cores, and the node's threads (one per sensor, fusion, MQTT) spread over
  them, so the node fits as long as no single thread needs a whole core.
- Latency scales by less than that: most of p50 is waiting (pty and socket wake-ups, the broker),
  not computing. Expect p99 of roughly 10-30 ms on a Pi 5 and 20-50 ms on a Pi 4 in the pipeline
  configuration; the shipped settings are dominated by the reorder window and the rate cap anyway.
- Resident memory is nearly the same (interpreter, numpy, scipy and the tracker's preallocated
  arrays dominate), a little lower on 64-bit ARM builds of numpy; a 2 GB Pi has ample room.
- Start-up is dominated by importing Python packages from the SD card: expect 2-3x the figure here
  on a Pi 5 and 4-6x on a Pi 4 (cold cache after boot is the worst case; the target of 2 s is for a
  warm cache). systemd's `TimeoutStartSec` in the unit leaves a wide margin.
"""


if __name__ == "__main__":
    sys.exit(main())
