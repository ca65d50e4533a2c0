"""Large inputs (issue 20): `admission-cli check` on a 10 MB compose file with 600,000 environment entries and no
anchor, and on a 10 MB multi-document Kubernetes manifest, against a bare PyYAML load of the same bytes
(`yaml.load` / `list(yaml.load_all(...))` with `CSafeLoader`), in the same run. Target: at most 1.5x the baseline's wall
time and 1.5x its peak memory (RSS), each. Also timed: an alias bomb and a merge-key bomb are refused (exit 2).

Every run is a fresh process of the installed CLI (or of the same interpreter for the baseline), measured with
os.wait4 (wall time and the child's own ru_maxrss). Ours and the baseline alternate within each round, so load on a
shared machine moves both; each ratio is the median of the rounds' ratios. The inputs are generated (the project's own
shapes, no corpus needed).

Usage: python bench/large.py [--runs N]  -> prints the figures and writes bench/results/large.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).parent / "admission-cli")
TARGET = 1.5
BARE = {
    "single": "import sys, yaml\nyaml.load(open(sys.argv[1], encoding='utf-8').read(), Loader=yaml.CSafeLoader)\n",
    "stream": "import sys, yaml\nlist(yaml.load_all(open(sys.argv[1], encoding='utf-8').read(), Loader=yaml.CSafeLoader))\n",
}


def compose_file(path: Path, *, services: int = 60, entries: int = 10_000) -> int:
    """services x entries environment entries, written out (no anchor): about 10 MB for 600,000."""
    lines = ["services:"]
    for s in range(services):
        lines += [f"  svc{s:02d}:", f"    image: registry.example.com/team/app{s}:1.2.{s}", "    user: '10001'",
                  "    mem_limit: 256m", "    cpus: 0.5", "    healthcheck: {test: [CMD, 'true']}", "    environment:"]
        lines += [f"      E{i:05d}: v{i % 100}" for i in range(entries)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return services * entries


def manifest(path: Path, *, size: int = 10 * 1024 * 1024) -> int:
    """Deployments and Services up to `size` bytes; every tenth Deployment has no limits (a finding to report)."""
    docs: list[str] = []
    written = i = 0
    while written < size:
        limits = "" if i % 10 == 0 else "          resources:\n            limits: {cpu: 500m, memory: 256Mi}\n"
        doc = (f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i}\n  namespace: team-{i % 50}\n"
               f"  labels: {{app: app-{i}, tier: backend}}\nspec:\n  replicas: 2\n  selector:\n"
               f"    matchLabels: {{app: app-{i}}}\n  template:\n    metadata:\n      labels: {{app: app-{i}}}\n"
               "    spec:\n      securityContext: {runAsNonRoot: true, runAsUser: 10001}\n      containers:\n"
               f"        - name: app\n          image: registry.example.com/team-{i % 50}/app-{i}:1.{i % 10}.{i % 7}\n"
               "          ports:\n            - containerPort: 8080\n          env:\n            - name: LOG_LEVEL\n"
               f"              value: info\n            - name: INSTANCE\n              value: \"{i}\"\n{limits}"
               "          readinessProbe:\n            httpGet: {path: /healthz, port: 8080}\n---\n"
               f"apiVersion: v1\nkind: Service\nmetadata:\n  name: app-{i}\n  namespace: team-{i % 50}\nspec:\n"
               f"  selector: {{app: app-{i}}}\n  ports:\n    - port: 80\n      targetPort: 8080\n")
        docs.append(doc)
        written += len(doc) + 4
        i += 1
    path.write_text("---\n".join(docs), encoding="utf-8")
    return 2 * i


def alias_bomb(path: Path) -> None:
    rows = ["x-a: &a [x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcdefgh", "bcdefghi"):
        rows.append(f"x-{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    path.write_text("\n".join(rows) + "\nservices:\n  web:\n    image: nginx:1.27.1\n    labels: *i\n")


def merge_bomb(path: Path) -> None:
    rows = ["x-a: &a {" + ", ".join(f"a{i}: x" for i in range(9)) + "}"]
    for prev, name in zip("abcdefgh", "bcdefghi"):
        rows.append(f"x-{name}: &{name} {{<<: *{prev}, " + ", ".join(f"{name}{i}: *{prev}" for i in range(9)) + "}")
    path.write_text("\n".join(rows) + "\nservices:\n  web:\n    <<: *i\n    image: nginx:1.27.1\n")


def measure(cmd: list[str], *, out: Path | None = None) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MiB, exit code) of one fresh process."""
    with open(out or os.devnull, "wb") as sink:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss / 1024, proc.returncode


def bench_file(path: Path, bare: str, runs: int, work: Path) -> dict[str, object]:
    report = work / "report.json"
    rounds = []
    for _ in range(runs):
        ours = measure([CLI, "check", "--no-config", "--format", "json", str(path)], out=report)
        base = measure([sys.executable, "-c", BARE[bare], str(path)])
        assert base[2] == 0, f"the bare load failed on {path}"
        result = json.loads(report.read_text())
        assert ours[2] in (0, 1) and result["errors"] == [], f"refused or failed: {result['errors'][:1]}"
        rounds.append({"ours_s": ours[0], "ours_mib": ours[1], "bare_s": base[0], "bare_mib": base[1],
                       "time_ratio": ours[0] / base[0], "memory_ratio": ours[1] / base[1]})
    summary = {key: statistics.median(r[key] for r in rounds)  # type: ignore[misc]
               for key in ("ours_s", "ours_mib", "bare_s", "bare_mib", "time_ratio", "memory_ratio")}
    return {"bytes": path.stat().st_size, **summary, "target": TARGET, "objects": result["summary"]["objects"],
            "findings": len(result["findings"]), "rounds": rounds}


def bench_bomb(path: Path, runs: int, work: Path) -> dict[str, object]:
    report = work / "bomb.json"
    times, peaks = [], []
    for _ in range(runs):
        wall, peak, code = measure([CLI, "check", "--no-config", "--format", "json", str(path)], out=report)
        errors = json.loads(report.read_text())["errors"]
        assert code == 2 and "alias bomb" in errors[0]["message"], errors
        times.append(wall)
        peaks.append(peak)
    return {"refused_s": statistics.median(times), "peak_mib": statistics.median(peaks), "error": errors[0]["message"],
            "line": errors[0]["line"]}


def generate(work: Path) -> dict[str, int]:
    counts = {"environment_entries": compose_file(work / "compose.yaml"),
              "documents": manifest(work / "manifest.yaml")}
    alias_bomb(work / "alias-bomb.yaml")
    merge_bomb(work / "merge-bomb.yaml")
    return counts


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--generate", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        print(json.dumps(generate(Path(args.generate))))
        return 0
    results: dict[str, object] = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "runs": args.runs}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # Generated in a child: a child's peak RSS starts at its parent's (fork), so this process stays small.
        counts = json.loads(subprocess.run([sys.executable, __file__, "--generate", str(work)], check=True,
                                           capture_output=True, text=True).stdout)
        entries, documents = counts["environment_entries"], counts["documents"]
        results["compose_600k_env"] = {"environment_entries": entries,
                                       **bench_file(work / "compose.yaml", "single", args.runs, work)}
        results["kubernetes_10mb_stream"] = {"documents": documents,
                                             **bench_file(work / "manifest.yaml", "stream", args.runs, work)}
        results["alias_bomb"] = bench_bomb(work / "alias-bomb.yaml", args.runs, work)
        results["merge_key_bomb"] = bench_bomb(work / "merge-bomb.yaml", args.runs, work)
    results["load_average_after"] = os.getloadavg()[0]
    out = ROOT / "bench" / "results" / "large.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'input':<24} {'MB':>5} {'ours':>8} {'bare':>8} {'ratio':>6} {'ours MiB':>9} {'bare MiB':>9} {'ratio':>6}")
    for name in ("compose_600k_env", "kubernetes_10mb_stream"):
        r = results[name]
        assert isinstance(r, dict)
        verdict = "ok" if r["time_ratio"] <= TARGET and r["memory_ratio"] <= TARGET else "OVER"
        print(f"{name:<24} {r['bytes'] / 1e6:>5.1f} {r['ours_s']:>7.2f}s {r['bare_s']:>7.2f}s {r['time_ratio']:>5.2f}x "
              f"{r['ours_mib']:>9.0f} {r['bare_mib']:>9.0f} {r['memory_ratio']:>5.2f}x  {verdict}")
    for name in ("alias_bomb", "merge_key_bomb"):
        r = results[name]
        assert isinstance(r, dict)
        print(f"{name:<24} refused in {r['refused_s']:.2f}s, peak {r['peak_mib']:.0f} MiB: {r['error']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
