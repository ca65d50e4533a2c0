"""The first minute: `git clone` then `make demo`, timed from nothing, as a new user meets the project.

Each round clones the repository into a temp folder and runs `make demo` there (a new venv, `pip install .`, the two
checks), then, as the baseline measured in the same round, the least any Python tool asks of a first run: a new venv
and `pip install` of the same clone by hand, with the same pip cache. Rounds run with pip's cache as this machine has
it (warm) and without it (`PIP_NO_CACHE_DIR=1`: every wheel from the index). The goal is the issue's: `make demo`
prints its result within 60 s of `git clone`. After the last warm round, `make test`'s install (the extras, editable)
is timed on top of the demo's venv, and `make demo` once more (it must install nothing).

Usage: python bench/firstrun.py [--rounds N]  -> prints a table and writes bench/results/firstrun.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 60.0


def _timed(cmd: list[str], *, cwd: Path, env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    return time.perf_counter() - start, proc


def _round(work: Path, *, env: dict[str, str]) -> dict[str, float]:
    clone = work / "clone"
    clone_s, proc = _timed(["git", "clone", "-q", str(ROOT), str(clone)], cwd=work, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"git clone failed: {proc.stderr}")
    demo_s, proc = _timed(["make", "demo"], cwd=clone, env=env)
    if proc.returncode != 0 or "now the fixed example" not in proc.stdout:
        raise RuntimeError(f"make demo failed ({proc.returncode}): {proc.stdout[-800:]} {proc.stderr[-800:]}")
    venv = work / "by-hand"
    start = time.perf_counter()
    subprocess.run(["python3", "-m", "venv", str(venv)], env=env, check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(clone)], env=env, check=True,
                   capture_output=True)
    baseline_s = time.perf_counter() - start
    return {"clone_s": clone_s, "make_demo_s": demo_s, "first_result_s": clone_s + demo_s, "by_hand_s": baseline_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("make") is None or shutil.which("git") is None:
        print("firstrun: needs git and make on PATH", file=sys.stderr)
        return 2
    base_env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    base_env["PATH"] = os.pathsep.join(p for p in base_env.get("PATH", "").split(os.pathsep)
                                       if not p.startswith(str(Path(sys.executable).parent)))
    results: dict[str, object] = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "goal_s": GOAL_S}
    for label, extra in (("warm_pip_cache", {}), ("cold_pip_cache", {"PIP_NO_CACHE_DIR": "1"})):
        rounds = []
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="admission-firstrun-") as tmp:
                rounds.append(_round(Path(tmp), env={**base_env, **extra}))
        median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
        results[label] = {**median, "ratio": median["make_demo_s"] / median["by_hand_s"],
                          "rounds_first_result_s": [r["first_result_s"] for r in rounds]}
    with tempfile.TemporaryDirectory(prefix="admission-firstrun-") as tmp:
        work = Path(tmp)
        _round(work, env=base_env)
        clone = work / "clone"
        full_s, proc = _timed(["make", ".venv/.installed-full"], cwd=clone, env=base_env)
        if proc.returncode != 0:
            raise RuntimeError(f"make test's install failed: {proc.stdout[-800:]} {proc.stderr[-800:]}")
        again_s, proc = _timed(["make", "demo"], cwd=clone, env=base_env)
        results["after_demo"] = {"make_test_install_s": full_s, "make_demo_again_s": again_s,
                                 "demo_again_installed": "pip install" in proc.stdout}
    out = ROOT / "bench" / "results" / "firstrun.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'case':<34} {'clone':>7} {'make demo':>10} {'by hand':>8} {'ratio':>6} {'first result':>13}")
    for label in ("warm_pip_cache", "cold_pip_cache"):
        r = results[label]
        assert isinstance(r, dict)
        print(f"{label:<34} {r['clone_s']:>6.2f}s {r['make_demo_s']:>9.1f}s {r['by_hand_s']:>7.1f}s "
              f"{r['ratio']:>5.2f}x {r['first_result_s']:>12.1f}s  (goal <= {GOAL_S:.0f} s)")
    after = results["after_demo"]
    assert isinstance(after, dict)
    print(f"then make test's install: {after['make_test_install_s']:.1f} s; make demo again: "
          f"{after['make_demo_again_s']:.2f} s (installed again: {after['demo_again_installed']})")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
