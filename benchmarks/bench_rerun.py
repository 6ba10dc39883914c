"""A rerun after a drawing-only change against the first run: computation stages and the whole wall time.

Both runs write into fresh temporary folders with one fresh cache, side by side in this process's
run: the first fills the cache, the second changes only --gif_frame_ms and must recompute nothing.
Targets (issue 13): computation stages under 10 % of their first-run time, the whole rerun at most
60 % of the first run's wall time. Pass extra arguments through (e.g. --quick).
"""
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPUTATION = ("training", "surfaces", "curvature", "embeddings", "interpolation")


def timed_run(args: list, out: Path) -> tuple:
    start = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "main.py"), f"--output_dir={out}", *args], check=True,
                   cwd=ROOT, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    timings = json.loads((out / "summary.json").read_text())["timings_s"]
    return wall, sum(timings.get(stage, 0.0) for stage in COMPUTATION)


def main(extra: list) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        common = [f"--cache_dir={tmp / 'cache'}", *extra]
        first_wall, first_compute = timed_run(common, tmp / "first")
        again_wall, again_compute = timed_run([*common, "--gif_frame_ms=120"], tmp / "again")
    compute_ratio, wall_ratio = again_compute / first_compute, again_wall / first_wall
    print(f"first run:  {first_wall:6.1f} s wall, computation stages {first_compute:6.2f} s")
    print(f"rerun (--gif_frame_ms=120): {again_wall:6.1f} s wall, computation stages {again_compute:6.2f} s")
    print(f"computation stages: {100 * compute_ratio:.1f} % of the first run (target < 10 %)")
    print(f"whole rerun:        {100 * wall_ratio:.1f} % of the first run's wall time (target <= 60 %)")
    return 0 if compute_ratio < 0.10 and wall_ratio <= 0.60 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
