"""The soak: seeded harness sessions, one after another, for a number of minutes; a Markdown summary.

    python -m tests.harness.soak --seed 7 --minutes 20 --instances 3
    make soak SEED=7 MINUTES=20

Each session runs a larger workload with harsher faults than the test's short run; the seeds are
``SEED``, ``SEED+1``, ... until the minutes are spent (at least one session; ``--minutes 0`` runs
exactly one, at the test's size: the replay of a failing test seed). The summary (seeds, minutes,
runs, files, faults injected, every violation) goes to bench/RESULTS-soak.md, each session's
schedule, journals and instance logs to bench/.tmp/soak/seed-N/. The exit status is 1 when any
invariant was violated.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from tests.harness.faults import HARSH, MODERATE
from tests.harness.session import Report, Session, SessionConfig
from tests.harness.workload import SHORT, WorkloadShape

ROOT = Path(__file__).resolve().parents[2]
SOAK_SHAPE = WorkloadShape(runs=30, span_seconds=60, max_files=40, big_file_mib=6)


def markdown(reports: list[Report], minutes: float, instances: int, command: str) -> str:
    runs = sum(r.runs for r in reports)
    files = sum(r.files for r in reports)
    faults: Counter[str] = Counter()
    for report in reports:
        faults.update(report.faults_by_kind())
    violations = [(r.seed, v) for r in reports for v in r.violations]
    by_invariant = Counter(v.invariant for _, v in violations)
    lines = [
        "# Soak: the fault-injection harness, long",
        "",
        f"`{command}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()} "
        f"({platform.machine()}, Python {platform.python_version()}); other engineers' work may share the machine.",
        "",
        "| seeds | minutes | instances | sessions | runs | files | faults injected | violations |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| {', '.join(str(r.seed) for r in reports)} | {minutes:.1f} | {instances} | {len(reports)} | {runs} | "
        f"{files} | {sum(faults.values())} | {len(violations)} |",
        "",
        "## Faults injected",
        "",
        "| kind | count |",
        "|---|---:|",
        *[f"| {kind} | {count} |" for kind, count in sorted(faults.items())],
        "",
        "## Sessions",
        "",
        "| seed | runs | files | faults | seconds | violations |",
        "|---:|---:|---:|---:|---:|---:|",
        *[f"| {r.seed} | {r.runs} | {r.files} | {len(r.applied)} | {r.seconds:.0f} | {len(r.violations)} |"
          for r in reports],
        "",
        "## Violations by invariant",
        "",
    ]
    if not violations:
        lines.append("None.")
    else:
        lines += ["| invariant | count |", "|---|---:|", *[f"| {k} | {n} |" for k, n in by_invariant.most_common()],
                  "", "## Every violation", ""]
        lines += [f"- seed {seed}: {v.describe()}" for seed, v in violations]
    notes = [(r.seed, n) for r in reports for n in r.notes]
    if notes:
        lines += ["", "## Notes", "", *[f"- seed {seed}: {note}" for seed, note in notes]]
    lines += ["", "Replay a seed: `python -m tests.harness.soak --seed N --minutes 0` (the test's size) or "
              "`make soak SEED=N MINUTES=1`; the schedule of each session is in bench/.tmp/soak/seed-N/schedule.txt.",
              ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.harness.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "RESULTS-soak.md")
    args = parser.parse_args(argv)
    one_short = args.minutes <= 0
    deadline = time.monotonic() + args.minutes * 60
    reports: list[Report] = []
    seed = args.seed
    began = time.monotonic()
    while not reports or time.monotonic() < deadline:
        print(f"soak: seed {seed} ({args.instances} instances)", flush=True)
        config = SessionConfig(seed=seed, instances=args.instances, shape=SHORT if one_short else SOAK_SHAPE,
                               faults=MODERATE if one_short else HARSH, quiesce_seconds=180,
                               workdir=ROOT / "bench" / ".tmp" / "soak" / f"seed-{seed}")
        report = Session(config).run()
        print(report.summary(), flush=True)
        reports.append(report)
        if one_short:
            break
        seed += 1
    minutes = (time.monotonic() - began) / 60
    command = " ".join(["python -m tests.harness.soak", *(argv if argv is not None else sys.argv[1:])])
    args.output.write_text(markdown(reports, minutes, args.instances, command), encoding="utf-8")
    print(f"soak: {len(reports)} session(s), {sum(len(r.violations) for r in reports)} violation(s); "
          f"summary in {args.output}", flush=True)
    return 1 if any(r.violations for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
