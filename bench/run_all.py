"""Run every benchmark in sequence; each prints its table and writes bench/results/<name>.md.

Usage:  .venv/bin/python bench/run_all.py [--quick]
(`make bench` runs the full set: about 25-30 minutes on 2 cores, most of it bench_quality.py.)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: (script, arguments for --quick); an empty quick list means the script has no quick mode
SCRIPTS = [
    ("bench_detection_speed.py", ["--quick"]),
    ("bench_cv_speed.py", ["--repeats", "1", "--datasets", "emotions", "--out", "bench/results/cv_speed_quick.md"]),
    ("bench_embed.py", []),
    ("bench_quality.py", ["--quick"]),
    ("bench_cleaning_helps.py", ["--quick"]),  # reuses bench_quality's cached text / image embeddings
    ("bench_reaudit.py", ["--repeats", "1", "--datasets", "mulan_flags", "--out", "bench/results/reaudit_quick.md"]),
    ("bench_concurrency.py", ["--repeats", "1", "--out", "bench/results/concurrency_quick.md"]),
]
#: arguments of the full (not --quick) run, where a script needs some
FULL_ARGS = {"bench_quality.py": ["--split", "test", "--workers", "2"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke-sized runs (results go to *_quick.md files)")
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    failed = []
    for script, quick_args in SCRIPTS:
        cmd = [sys.executable, str(HERE / script), *(quick_args if args.quick else FULL_ARGS.get(script, []))]
        print(f"\n=== {' '.join(cmd)}", flush=True)
        if subprocess.run(cmd, env=env, cwd=HERE.parent).returncode != 0:
            failed.append(script)
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
