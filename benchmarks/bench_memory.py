"""Peak memory of the full-data loss and its gradient on 100k samples: eval batches of 1000 against one batch."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
N_SAMPLES, N_FEATURES, HIDDEN, EVAL_BATCH, K_THETAS = 100_000, 10, 32, 1000, 16

# What each case computes, in the fresh process of the probe below (fm, theta, X, y, thetas set up there).
CASES = {
    "loss + backward (plain autograd)": "t = theta.clone().requires_grad_(True); fm.loss(t, X, y).backward()",
    "fm.grad (torch.func, per batch)": "fm.grad(theta, X, y)",
    "torch.func.grad(fm.loss)": "torch.func.grad(fm.loss)(theta, X, y)",
    f"fm.losses of {K_THETAS} thetas (no grad)": "fm.losses(thetas, X, y)",
}

# One case in a fresh process. Linux keeps a process's peak resident size (VmHWM); writing 5 to
# clear_refs resets it, so the peak read after the call is the peak during the call.
PROBE = """
import re, sys, time, torch
sys.path.insert(0, sys.argv[1])
from data import make_dataset
from models import FlatModel, build_model
torch.set_num_threads(1)
def megabytes(field):
    return int(re.search(field + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1)) / 1024
n, d, hidden, batch, k = (int(v) for v in sys.argv[2:7])
data = make_dataset("classification", n, d, 0.1, seed=0)
X, y = data.X, data.y
fm = FlatModel(build_model("mlp", d, hidden, seed=0), eval_batch_size=batch or None)
theta = fm.theta0
thetas = theta + 0.01 * torch.randn(k, fm.dim, generator=torch.Generator().manual_seed(0))
# warm-up on 10 samples in batches of 5: lazy imports happen, yet leave no large freed heap behind
small = FlatModel(build_model("mlp", d, hidden, seed=0), eval_batch_size=5)
exec(sys.argv[7], dict(globals(), fm=small, X=X[:10], y=y[:10]))
before = megabytes("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
exec(sys.argv[7])
peak = megabytes("VmHWM") - before
times = []
for _ in range(3):
    start = time.perf_counter()
    exec(sys.argv[7])
    times.append(time.perf_counter() - start)
print(peak, sorted(times)[1])
"""


def probe(code: str, eval_batch: int) -> tuple:
    """(peak MB above the resident size before the first call, median seconds of 3 more calls)."""
    args = [str(ROOT), str(N_SAMPLES), str(N_FEATURES), str(HIDDEN), str(eval_batch), str(K_THETAS), code]
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=False)
    if out.returncode:
        sys.exit(f"the memory probe failed:\n{out.stderr}")
    peak, seconds = (float(v) for v in out.stdout.split())
    return peak, seconds


def main():
    print(f"MLP {N_FEATURES}-{HIDDEN}-1 on {N_SAMPLES:,} samples, one torch thread; peak memory above the "
          f"resident size before the call, in a fresh process per case; time: median of 3 calls")
    rows = {}
    for name, code in CASES.items():
        whole, batched = probe(code, 0), probe(code, EVAL_BATCH)
        rows[name] = {"one_batch_mb": whole[0], "batched_mb": batched[0],
                      "one_batch_s": whole[1], "batched_s": batched[1]}
        print(f"  {name:38s} one batch {whole[0]:7.1f} MB {whole[1]:6.3f} s | eval_batch_size={EVAL_BATCH}: "
              f"{batched[0]:6.1f} MB {batched[1]:6.3f} s | memory x{batched[0] / max(whole[0], 0.1):.3f}, "
              f"time x{batched[1] / whole[1]:.2f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
