#!/usr/bin/env python3
"""ocync next to `skopeo sync` on the same local corpus, through real registries.

Starts CNCF distribution registries (access logs on), pushes a corpus with ocync-testdata,
and runs each tool per scenario: cold (empty target), warm (nothing changed), partial (a few
tags re-pushed with new top layers), fan-out (two targets: one ocync run, two skopeo runs) and
big (one image with a large layer). Per tool and scenario it reports wall time, peak RSS,
requests at the source and at the targets by method, bytes read from the source, duplicate
blob GETs, and whether every tag landed with the source digest. The quota scenario (N ocync
processes under one shared per-second quota) is quota.py's, with its own table. Medians over --runs, with
min/max, as a markdown table on stdout and JSON lines in --json-out.

Only the standard library; tools are found on PATH or in target/.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from common import ROOT, Registry, digest, image_shape, require, tags_of
import quota

SCENARIOS = ["cold", "warm", "partial", "fan-out", "big", "quota"]


def corpus(host, repositories):
    """{(repository, tag): image_shape} of everything the source serves."""
    return {(r, t): image_shape(host, r, t) for r in repositories for t in tags_of(host, r)}


def all_blobs(images):
    return {d: size for _, _, blobs in images.values() for d, size in blobs.items()}


def lower_bound(images, at_targets, targets):
    """The fewest requests (source, target) a correct tool needs to bring `targets` registries,
    each holding `at_targets` (the same shape as `images`; {} when empty), up to `images`.

    Source: one tag list per repository; per tag one HEAD if no target needs it, else a GET of
    every manifest; each blob a target lacks is read once for all targets. Target, per
    registry: one HEAD per tag; for an image to copy, per blob: nothing if this run already
    put it in that repository, one HEAD if the repository had it before, one mount POST if
    another repository of the registry has it, else POST + PUT; one PUT per manifest."""
    changed = {key for key, shape in images.items() if at_targets.get(key, (None,))[0] != shape[0]}
    source = len({r for r, _ in images})
    read = set(all_blobs(at_targets))
    for key, (_, count, blobs) in images.items():
        source += count if key in changed else 1
        if key in changed:
            fresh = set(blobs) - read
            source += len(fresh)
            read |= fresh
    target = 0
    for _ in range(targets):
        before = {}
        for (r, _), (_, _, blobs) in at_targets.items():
            before.setdefault(r, set()).update(blobs)
        in_registry = set().union(*before.values()) if before else set()
        pushed = {}
        for key, (_, count, blobs) in sorted(images.items()):
            target += 1
            if key not in changed:
                continue
            repository = key[0]
            for blob in blobs:
                if blob in pushed.get(repository, set()):
                    continue
                if blob in before.get(repository, set()):
                    target += 1
                elif blob in in_registry:
                    target += 1
                else:
                    target += 2
                pushed.setdefault(repository, set()).add(blob)
                in_registry.add(blob)
            target += count
    return source, target


def timed(command, env=None):
    """Runs a command under GNU time: (wall seconds, peak RSS MiB, exit code, CPU seconds)."""
    out = tempfile.mktemp()
    code = subprocess.call(["/usr/bin/time", "-f", "%e %M %U %S", "-o", out] + command, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out) as f:
        wall, rss, user, system = f.read().split()[-4:]
    os.unlink(out)
    return float(wall), int(rss) / 1024, code, float(user) + float(system)


class Tools:
    def __init__(self, workdir, repositories, profile):
        self.ocync = os.path.join(ROOT, "target", profile, "ocync")
        self.workdir = workdir
        self.repositories = repositories
        self.skopeo = require("skopeo", "apt-get install -y skopeo")
        self.musl = None

    def sync(self, tool, source, targets):
        """One sync of every corpus repository by `tool` (ocync, ocync-musl, or skopeo once per
        target); (wall, peak RSS, worst exit code, CPU seconds)."""
        if tool == "skopeo":
            walls, rss, code, cpu = [], 0, 0, 0
            for target in targets:
                w, r, c, u = self.skopeo_sync(source, target)
                walls.append(w)
                rss, code, cpu = max(rss, r), max(code, c), cpu + u
            return sum(walls), rss, code, cpu
        return self.ocync_sync(source, targets, binary=self.musl if tool == "ocync-musl" else None)

    def ocync_sync(self, source, targets, repositories=None, binary=None):
        names = [f"t{i}" for i in range(len(targets))]
        lines = [f"registries:\n  src: {{ url: \"http://{source}\" }}"]
        lines += [f"  {n}: {{ url: \"http://{t}\" }}" for n, t in zip(names, targets)]
        lines.append(f"defaults:\n  source: src\n  targets: [{', '.join(names)}]\nmappings:")
        lines += [f"  - from: {r}" for r in (repositories or self.repositories)]
        config = os.path.join(self.workdir, f"ocync-{time.time_ns()}.yaml")
        with open(config, "w") as f:
            f.write("\n".join(lines) + "\n")
        return timed([binary or self.ocync, "sync", "--config", config])

    def curl_pipe(self, source, target, repository, layer):
        """The floor for moving one blob: `curl GET | curl PUT` into an upload session opened
        beforehand (the session's POST is not timed)."""
        request = urllib.request.Request(f"http://{target}/v2/{repository}/blobs/uploads/", method="POST")
        with urllib.request.urlopen(request, timeout=30) as answer:
            location = answer.headers["Location"]
        if not location.startswith("http"):
            location = f"http://{target}{location}"
        separator = "&" if "?" in location else "?"
        curl = require("curl", "apt-get install -y curl")
        pipe = (f"{curl} -fsS http://{source}/v2/{repository}/blobs/{layer} | "
                f"{curl} -fsS -X PUT -H 'Content-Type: application/octet-stream' -T - '{location}{separator}digest={layer}'")
        return timed(["bash", "-o", "pipefail", "-c", pipe])

    def skopeo_sync(self, source, target, repositories=None):
        spec = os.path.join(self.workdir, f"skopeo-{time.time_ns()}.yaml")
        with open(spec, "w") as f:
            f.write(f"{source}:\n  tls-verify: false\n  images-by-tag-regex:\n")
            for repository in repositories or self.repositories:
                f.write(f"    {repository}: '.*'\n")
        return timed([self.skopeo, "sync", "--all", "--preserve-digests", "--keep-going", "--src", "yaml",
                      "--dest", "docker", "--dest-tls-verify=false", spec, target])


def scale(tools, testdata, registry, repositories, args):
    """ocync alone, cold into one target and fanning out to two, on a corpus of `repositories`."""
    source = registry("scale-source")
    subprocess.check_call([testdata, "corpus", f"http://{source.host}", "--repositories", str(repositories),
                           "--tags", str(args.tags), "--base-mib", str(args.base_mib)], stdout=subprocess.DEVNULL)
    names = [f"bench/repo-{n:02}" for n in range(repositories)]
    results = []
    for name, count in (("scale cold", 1), ("scale fan-out", 2)):
        targets = [registry(f"scale-{count}-{n}") for n in range(count)]
        result = measure(name, "ocync", 0, [source], targets,
                         lambda: tools.ocync_sync(source.host, [t.host for t in targets], names))
        result["correct"] = all(landed(source, t, names, "ocync") for t in targets)
        result["repositories"] = repositories
        result["distinct_mib"] = round(sum(all_blobs(corpus(source.host, names)).values()) / 2**20)
        results.append(result)
        for t in targets:
            t.stop()
    source.stop()
    return results


def measure(name, tool, run, sources, targets, action):
    for registry in sources + targets:
        registry.mark()
    wall, rss, code, cpu = action()
    registries_cpu = sum(r.cpu_since_mark() for r in sources + targets)
    source_requests = [r for s in sources for r in s.requests()]
    target_requests = [r for t in targets for r in t.requests()]
    blob_gets = [r[1] for r in source_requests if r[0] == "GET" and "/blobs/" in r[1] and r[2] in (200, 307)]
    digests = [p.rsplit("/", 1)[-1] for p in blob_gets]
    return {
        "scenario": name, "tool": tool, "run": run, "wall_s": wall, "rss_mib": round(rss, 1), "exit": code,
        "cpu_s": round(cpu, 2), "registries_cpu_s": round(registries_cpu, 2),
        "source_requests": count_by_method(source_requests), "target_requests": count_by_method(target_requests),
        "requests": len(source_requests) + len(target_requests),
        "source_bytes": sum(r[3] for r in source_requests if r[0] == "GET" and "/blobs/" in r[1]),
        "duplicate_blob_gets": len(digests) - len(set(digests)),
    }


def count_by_method(requests):
    counts = {}
    for method, *_ in requests:
        counts[method] = counts.get(method, 0) + 1
    return counts


def landed(source, target, repositories, tool):
    """Every tag of every repository is at the target with the source digest. skopeo sync puts
    `bench/repo-00` at the destination's `repo-00` (it keeps only the last path component)."""
    for repository in repositories:
        mirrored = repository.rsplit("/", 1)[-1] if tool == "skopeo" else repository
        for tag in tags_of(source.host, repository):
            if digest(source.host, repository, tag) != digest(target.host, mirrored, tag):
                return False
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--repositories", type=int, default=16)
    parser.add_argument("--tags", type=int, default=3)
    parser.add_argument("--base-mib", type=int, default=20)
    parser.add_argument("--changed", type=int, default=3, help="tags re-pushed for the partial scenario")
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--scenario", action="append", choices=SCENARIOS)
    parser.add_argument("--json-out", default=None)
    parser.add_argument("--workdir", default="/dev/shm" if os.path.isdir("/dev/shm") else None,
                        help="where the registries keep their blobs (default: /dev/shm, so the disk does not set the pace)")
    parser.add_argument("--scale", type=lambda v: [int(n) for n in v.split(",")], default=[],
                        help="also run ocync alone, cold and fanning out, on corpora of these repository counts "
                             "(peak RSS against corpus size), e.g. 4,8,16")
    parser.add_argument("--plan-mappings", type=int, nargs="*", default=[500, 1000, 2000],
                        help="config sizes (mappings of 50 tags) for the planning benchmark")
    parser.add_argument("--profile", default="release", choices=["release", "debug"],
                        help="which build of ocync to run (debug only for the CI smoke run)")
    parser.add_argument("--ocync", default=None,
                        help="the ocync binary to measure (default: target/<profile>/ocync), e.g. another branch's build")
    parser.add_argument("--musl", default=None,
                        help="also measure this static musl build (the container image's binary) in the cold and fan-out runs")
    parser.add_argument("--workers", type=lambda v: [int(n) for n in v.split(",")], default=[6],
                        help="quota: comma-separated counts of concurrent ocync sync processes (default 6)")
    parser.add_argument("--quota", type=float, default=5, help="quota: shared requests per second (default 5)")
    parser.add_argument("--quota-on", action="append", choices=list(quota.VARIANTS),
                        help="quota: which requests the quota counts (default: each in turn)")
    parser.add_argument("--quota-repositories", type=int, default=24)
    parser.add_argument("--quota-tags", type=int, default=2)
    parser.add_argument("--quota-timeout", type=float, default=600, help="quota: seconds before a worker is killed")
    args = parser.parse_args()
    scenarios = args.scenario or SCENARIOS
    require("/usr/bin/time", "apt-get install -y time")
    testdata = os.path.join(ROOT, "target", args.profile, "ocync-testdata")
    if not os.path.exists(testdata):
        sys.exit(f"build first: cargo build {'--release ' if args.profile == 'release' else ''}--features testing --bins")

    workdir = tempfile.mkdtemp(prefix="ocync-bench-", dir=args.workdir)
    repositories = [f"bench/repo-{n:02}" for n in range(args.repositories)]
    tools = Tools(workdir, repositories, args.profile)
    tools.ocync = args.ocync or tools.ocync
    tools.musl = args.musl
    registries = []
    started = iter(range(10**6))

    def registry(name):
        r = Registry(workdir, f"{name}-{next(started)}")
        registries.append(r)
        return r

    results, shared = [], []
    try:
        big_source = None
        if "big" in scenarios:
            big_source = registry("big-source")
            subprocess.check_call([testdata, "push", f"http://{big_source.host}/bench/big:1", "image",
                                   "--base-mib", str(args.big_mib)], stdout=subprocess.DEVNULL)
        for run in range(args.runs):
            if "quota" in scenarios:
                shared += quota.run(tools.ocync, testdata, workdir, registry, run, args)
                if set(scenarios) == {"quota"}:
                    continue
            source = registry("source")
            subprocess.check_call([testdata, "corpus", f"http://{source.host}", "--repositories", str(args.repositories),
                                   "--tags", str(args.tags), "--base-mib", str(args.base_mib)], stdout=subprocess.DEVNULL)
            before = corpus(source.host, repositories)
            bounds = {"cold": lower_bound(before, {}, 1), "warm": lower_bound(before, before, 1),
                      "fan-out": lower_bound(before, {}, 2)}
            warm_targets = {}
            for tool in ("ocync", "skopeo") + (("ocync-musl",) if tools.musl else ()):
                target = registry(f"{tool}-target")
                warm_targets[tool] = target
                sync = lambda t=target, tool=tool: tools.sync(tool, source.host, [t.host])
                for name in ("cold", "warm") if tool != "ocync-musl" else ("cold",):
                    if name in scenarios or (name == "cold" and ("warm" in scenarios or "partial" in scenarios)):
                        result = measure(name, tool, run, [source], [target], sync)
                        result["correct"] = landed(source, target, repositories, tool)
                        result["lower_bound"] = bounds[name]
                        if name in scenarios:
                            results.append(result)
                if tool == "ocync-musl":
                    warm_targets.pop(tool).stop()
            if "partial" in scenarios:
                subprocess.check_call([testdata, "corpus", f"http://{source.host}", "--repositories", str(args.repositories),
                                       "--tags", str(args.tags), "--base-mib", str(args.base_mib),
                                       "--changed", str(args.changed), "--generation", str(run + 1)], stdout=subprocess.DEVNULL)
                after = corpus(source.host, repositories)
                changed_bytes = sum(size for d, size in all_blobs(after).items() if d not in all_blobs(before))
                bounds["partial"] = lower_bound(after, before, 1)
                for tool in ("ocync", "skopeo"):
                    target = warm_targets[tool]
                    sync = lambda t=target, tool=tool: tools.sync(tool, source.host, [t.host])
                    result = measure("partial", tool, run, [source], [target], sync)
                    result["correct"] = landed(source, target, repositories, tool)
                    result["changed_bytes"] = changed_bytes
                    result["lower_bound"] = bounds["partial"]
                    results.append(result)
            for target in warm_targets.values():
                target.stop()
            if "fan-out" in scenarios:
                for tool in ("ocync", "skopeo") + (("ocync-musl",) if tools.musl else ()):
                    pair = [registry(f"{tool}-a"), registry(f"{tool}-b")]
                    action = lambda pair=pair, tool=tool: tools.sync(tool, source.host, [p.host for p in pair])
                    result = measure("fan-out", tool, run, [source], pair, action)
                    result["correct"] = all(landed(source, p, repositories, tool) for p in pair)
                    result["lower_bound"] = bounds["fan-out"]
                    results.append(result)
                    for p in pair:
                        p.stop()
            if "big" in scenarios:
                big = corpus(big_source.host, ["bench/big"])
                for tool in ("ocync", "skopeo", "curl"):
                    target = registry(f"{tool}-big")
                    if tool == "curl":
                        layer = max(all_blobs(big).items(), key=lambda item: item[1])[0]
                        sync = lambda t=target: tools.curl_pipe(big_source.host, t.host, "bench/big", layer)
                    elif tool == "ocync":
                        sync = lambda t=target: tools.ocync_sync(big_source.host, [t.host], ["bench/big"])
                    else:
                        sync = lambda t=target: tools.skopeo_sync(big_source.host, t.host, ["bench/big"])
                    result = measure("big", tool, run, [big_source], [target], sync)
                    result["correct"] = tool == "curl" or landed(big_source, target, ["bench/big"], tool)
                    result["lower_bound"] = lower_bound(big, {}, 1)
                    results.append(result)
            for r in registries:
                if r is not big_source:
                    r.stop()
            registries[:] = [r for r in registries if r is big_source]
        for n in args.scale:
            results += scale(tools, testdata, registry, n, args)
            registries[:] = [r for r in registries if r is big_source]
    finally:
        for r in registries:
            r.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    if args.json_out:
        with open(args.json_out, "w") as f:
            for result in results + shared:
                f.write(json.dumps(result) + "\n")
    if results:
        print(table([r for r in results if not r["scenario"].startswith("scale")]))
        print("\n" + floors(results))
    scaled = [r for r in results if r["scenario"].startswith("scale")]
    if scaled:
        print("\n| corpus: repositories | distinct MiB | ocync cold wall s | cold peak RSS MiB | fan-out wall s | fan-out peak RSS MiB |")
        print("|---|---|---|---|---|---|")
        for n in args.scale:
            cold, fan = (next(r for r in scaled if r["repositories"] == n and r["scenario"] == f"scale {kind}")
                         for kind in ("cold", "fan-out"))
            print(f"| {n} | {cold['distinct_mib']} | {cold['wall_s']:.2f} | {cold['rss_mib']:.0f} | {fan['wall_s']:.2f} | {fan['rss_mib']:.0f} |")
    if shared:
        print("\n" + quota.table(shared))
    planning = [json.loads(subprocess.check_output([testdata, "plan-scale", "--mappings", str(m), "--tags", "50"]))
                for m in args.plan_mappings]
    print("\n| planning: mappings × 50 tags | tags | seconds | µs per tag | peak RSS MiB |\n|---|---|---|---|---|")
    for p in planning:
        print(f"| {p['mappings']} | {p['tags']} | {p['seconds']:.3f} | {1e6 * p['seconds'] / p['tags']:.1f} | {p['peak_rss_mib']:.0f} |")
    if args.json_out:
        with open(args.json_out, "a") as f:
            for p in planning:
                f.write(json.dumps({"scenario": "planning", **p}) + "\n")
    checks = targets(results, planning) + quota.goals(shared)
    if args.profile == "debug":
        print("\n(smoke run: debug build on a tiny corpus; the goals are judged on the full release run)")
    print("\n| goal | measured | met |\n|---|---|---|")
    for goal, measured, met in checks:
        print(f"| {goal} | {measured} | {'yes' if met else 'NO'} |")
    if args.json_out:
        with open(args.json_out, "a") as f:
            for goal, measured, met in checks:
                f.write(json.dumps({"goal": goal, "measured": measured, "met": met}) + "\n")
    # Every worker must finish and every tag land under the quota, in the smoke run too: that is
    # correctness (throttling waits out a time budget of minutes), not speed; how close ocync
    # comes to the quota-bound ideal is judged on the release run only.
    if not all(r["correct"] for r in shared):
        sys.exit("ocync lost tags or failed a worker under the shared quota")
    if not all(r["correct"] and r["exit"] == 0 for r in results if r["tool"].startswith("ocync")):
        sys.exit("ocync produced a wrong or failed mirror")


def median(values):
    return statistics.median(values) if values else 0


def table(results):
    def spread(values, fmt):
        return f"{fmt(median(values))} ({fmt(min(values))}–{fmt(max(values))})" if len(values) > 1 else fmt(median(values))

    lines = ["| scenario | tool | wall s | peak RSS MiB | CPU s: tool / registries | requests (source/target) "
             "| lower bound (source/target) | source MiB | dup blob GETs | correct |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for scenario in SCENARIOS:
        for tool in ("ocync", "ocync-musl", "skopeo", "curl"):
            rows = [r for r in results if r["scenario"] == scenario and r["tool"] == tool]
            if not rows:
                continue
            source = median([sum(r["source_requests"].values()) for r in rows])
            target = median([sum(r["target_requests"].values()) for r in rows])
            bound = rows[0].get("lower_bound")
            lines.append("| {} | {} | {} | {} | {:.2f} / {:.2f} | {:.0f}/{:.0f} | {} | {:.1f} | {:.0f} | {} |".format(
                scenario, tool, spread([r["wall_s"] for r in rows], lambda v: f"{v:.2f}"),
                spread([r["rss_mib"] for r in rows], lambda v: f"{v:.0f}"),
                median([r["cpu_s"] for r in rows]), median([r["registries_cpu_s"] for r in rows]), source, target,
                f"{bound[0]}/{bound[1]}" if bound and tool != "curl" else "–",
                median([r["source_bytes"] for r in rows]) / 2**20, median([r["duplicate_blob_gets"] for r in rows]),
                all(r["correct"] for r in rows)))
    return "\n".join(lines)


def floors(results):
    """Where the time goes: the CPU a run used (the tool's and the registries'), spread over this
    machine's cores, is a floor for its wall time, whatever the tool does."""
    cores = os.cpu_count()
    lines = [f"| scenario | tool | wall s | CPU s: tool + registries | floor s (CPU / {cores} cores) | 0.35 × skopeo wall s |",
             "|---|---|---|---|---|---|"]
    for scenario in ("cold", "fan-out"):
        skopeo = median([r["wall_s"] for r in results if r["scenario"] == scenario and r["tool"] == "skopeo"])
        for tool in ("ocync", "ocync-musl"):
            rows = [r for r in results if r["scenario"] == scenario and r["tool"] == tool]
            if rows:
                cpu = median([r["cpu_s"] + r["registries_cpu_s"] for r in rows])
                lines.append(f"| {scenario} | {tool} | {median([r['wall_s'] for r in rows]):.2f} | {cpu:.2f} "
                             f"| {cpu / cores:.2f} | {0.35 * skopeo:.2f} |")
    return "\n".join(lines)


def ratio(results, scenario, numerator, denominator, field="wall_s"):
    """Median over runs of one run's numerator/denominator figure (ratios within a run)."""
    pairs = {}
    for r in results:
        if r["scenario"] == scenario and r["tool"] in (numerator, denominator):
            pairs.setdefault(r["run"], {})[r["tool"]] = r[field]
    values = [p[numerator] / p[denominator] for p in pairs.values() if len(p) == 2 and p[denominator]]
    return median(values) if values else None


def targets(results, planning):
    """The goals of the benchmark, each as (goal, measured, met)."""
    def ocync(scenario):
        return [r for r in results if r["scenario"] == scenario and r["tool"] == "ocync"]

    checks = []

    def check(goal, measured, met):
        if measured is not None:
            checks.append((goal, measured, met))

    cold = ratio(results, "cold", "ocync", "skopeo")
    check("cold: wall ≤ 0.35 × skopeo", cold and f"{cold:.2f}", cold is not None and cold <= 0.35)
    if ocync("cold"):
        dup = max(r["duplicate_blob_gets"] for r in ocync("cold"))
        check("cold: zero duplicate source blob GETs", str(dup), dup == 0)
    fan_out = ratio(results, "fan-out", "ocync", "skopeo")
    check("fan-out: wall ≤ 0.35 × skopeo (once per target)", fan_out and f"{fan_out:.2f}",
          fan_out is not None and fan_out <= 0.35)
    for scenario in ("cold", "fan-out"):
        if ocync(scenario):
            rss = max(r["rss_mib"] for r in ocync(scenario))
            check(f"{scenario}: peak RSS ≤ 32 MiB", f"{rss:.1f}", rss <= 32)
    if ocync("cold"):
        worst = max(sum(r["target_requests"].values()) / r["lower_bound"][1] for r in ocync("cold"))
        check("cold: target requests ≤ 1.2 × lower bound", f"{worst:.2f}", worst <= 1.2)
    warm = ratio(results, "warm", "ocync", "skopeo")
    check("warm: wall ≤ 0.10 × skopeo", warm and f"{warm:.2f}", warm is not None and warm <= 0.10)
    if ocync("warm"):
        worst = max(r["requests"] / sum(r["lower_bound"]) for r in ocync("warm"))
        check("warm: requests ≤ 1.10 × lower bound", f"{worst:.2f}", worst <= 1.10)
    if ocync("partial"):
        worst = max(r["source_bytes"] / r["changed_bytes"] for r in ocync("partial"))
        check("partial: source bytes ≤ 1.25 × changed bytes", f"{worst:.2f}", worst <= 1.25)
    if ocync("fan-out") and ocync("cold"):
        once = max(r["source_bytes"] for r in ocync("fan-out")) / median([r["source_bytes"] for r in ocync("cold")])
        check("fan-out: source bytes read once (fan-out / cold)", f"{once:.2f}", once <= 1.0)
    if ocync("big"):
        rss = max(r["rss_mib"] for r in ocync("big"))
        check("big: peak RSS ≤ 20 MiB", f"{rss:.1f}", rss <= 20)
    big = ratio(results, "big", "ocync", "curl")
    check("big: wall ≤ 1.1 × curl GET|PUT", big and f"{big:.2f}", big is not None and big <= 1.1)
    for p in planning:
        if p["tags"] >= 100_000:
            check(f"planning {p['tags']} tags < 2 s", f"{p['seconds']:.3f}", p["seconds"] < 2)
    return checks


if __name__ == "__main__":
    main()
