#!/usr/bin/env python3
"""The Lambda function at real size: one worker invocation of the `bootstrap` binary syncing one
repository of the benchmark corpus (3 tags of two-platform indexes, 16 blobs, 51.5 MiB at
--base-mib 20) between two local registries, with the config in S3 (moto) as in production.

The Lambda Runtime API is a stand-in served here (the two calls the runtime makes: `next` and the
invocation's `response`/`error`), so the figures are the function's own:
- init: process start to its first `next` call (the handler built: env, AWS SDK, clients);
- peak memory: the process's VmHWM read when the invocation's response arrives (the process is
  still alive then), the figure to hold against the function's memory size;
- the invocation's duration, and every tag checked at the target against the source digest.

An arm64 binary runs under qemu-user (`qemu-aarch64`) unless the machine is arm64: its time is
emulated (many times slower) and its VmHWM includes qemu and its translated code, so only the
native figures are honest for memory and time.

    infra/bench/lambda.py [--build] [--runs N] [--arch arm64 --arch x86_64] [--bootstrap PATH]

--build runs `cargo lambda build --release --arm64|--x86-64 --features lambda --bin bootstrap`
(cargo-lambda and zig from .venv) and keeps each binary at target/lambda/<arch>/bootstrap.
Needs docker-registry, moto_server (.venv) and target/release/ocync-testdata
(`cargo build --release --features testing --bins`). Only the standard library.
"""

import argparse
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from common import ROOT, Registry, digest, free_port, image_shape, require, tags_of

VENV_BIN = os.path.join(ROOT, ".venv", "bin")
BUCKET = "ocync-config"
REPOSITORY = "bench/repo-00"
QEMU_SYSROOT = "/usr/aarch64-linux-gnu"


def build(arch):
    """`cargo lambda build` for `arch`; returns (binary, seconds)."""
    env = dict(os.environ, PATH=VENV_BIN + os.pathsep + os.environ["PATH"])
    flag = {"arm64": "--arm64", "x86_64": "--x86-64"}[arch]
    started = time.monotonic()
    subprocess.check_call(["nice", "-n", "10", "cargo", "lambda", "build", "--release", flag,
                           "--features", "lambda", "--bin", "bootstrap"], cwd=ROOT, env=env)
    seconds = time.monotonic() - started
    kept = os.path.join(ROOT, "target", "lambda", arch, "bootstrap")
    os.makedirs(os.path.dirname(kept), exist_ok=True)
    shutil.copy2(os.path.join(ROOT, "target", "lambda", "bootstrap", "bootstrap"), kept)
    return kept, seconds


def zipped_size(path):
    """The deployment package's size: the binary alone in a deflated zip, as `bootstrap`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as package:
        package.write(path, "bootstrap")
    return len(buffer.getvalue())


def elf_arch(path):
    with open(path, "rb") as f:
        header = f.read(20)
    return {0xB7: "arm64", 0x3E: "x86_64"}.get(int.from_bytes(header[18:20], "little"), "unknown")


def command_for(binary):
    """How to run `binary` here: natively, or under qemu-user for a foreign arm64 binary."""
    arch, machine = elf_arch(binary), platform.machine()
    native = {"x86_64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)
    if arch == native:
        return [binary], False
    if arch == "arm64":
        qemu = require("qemu-aarch64", "apt-get install -y qemu-user")
        # A glibc build (cargo lambda's aarch64-unknown-linux-gnu) needs the arm64 loader and libc.
        return [qemu, "-L", QEMU_SYSROOT, binary], True
    sys.exit(f"{binary}: cannot run a {arch} binary on {machine}")


class RuntimeApi:
    """The Lambda Runtime API for one invocation of `event`; later `next` calls wait forever."""

    def __init__(self, event):
        self.event = json.dumps(event).encode()
        self.request_id = str(uuid.uuid4())
        self.pid = None
        self.first_next = None
        self.answered = threading.Event()
        self.outcome = None
        self.peak_kib = None
        self.started = None
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def reply(self, status, body=b"{}"):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def body(self):
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_GET(self):
                if not self.path.endswith("/runtime/invocation/next"):
                    return self.reply(404)
                if api.first_next is not None:
                    api.answered.wait()
                    while True:  # one invocation only: the runtime waits here until it is stopped
                        time.sleep(3600)
                api.first_next = time.monotonic()
                api.started = time.monotonic()
                api.cpu_at_start = cpu_seconds(api.pid)
                api.ready_kib = vm_kib(api.pid, "VmRSS")
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", api.request_id)
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 900_000))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn",
                                 "arn:aws:lambda:us-east-1:123456789012:function:ocync")
                self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(api.event)))
                self.end_headers()
                self.wfile.write(api.event)

            def do_POST(self):
                body = self.body()
                if self.path.endswith(("/response", "/error")):
                    api.peak_kib = vm_kib(api.pid, "VmHWM")  # before answering: the process is alive
                    api.guest_kib = guest_rss_kib(api.pid)
                    api.cpu = cpu_seconds(api.pid) - api.cpu_at_start
                    api.duration = time.monotonic() - api.started
                    api.outcome = ("error" if self.path.endswith("/error") else "response", body.decode())
                    self.reply(202)
                    api.answered.set()
                else:
                    self.reply(404)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # the runtime's waiting `next` call is reset when the process is stopped

        self.server = Server(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def cpu_seconds(pid):
    """User + system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def guest_rss_kib(pid):
    """Under qemu-user (guest_base 0 on a 64-bit host): the resident memory of the mappings below
    16 TiB, where qemu places the arm64 guest (its image at 0x5500000000, its heap and mmaps
    above); qemu's own binary, libraries, heap and translated code sit at 0x55xx… and 0x7f…
    TiB addresses. A heuristic for this layout, and a current figure, not a peak."""
    total = 0
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if "-" in line.split(" ", 1)[0]:  # a mapping's header line
                low = int(line.split("-", 1)[0], 16) < 0x1000_0000_0000
            elif line.startswith("Rss:") and low:
                total += int(line.split()[1])
    return total


def vm_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


class Moto:
    """moto_server on a free port, stopped by PID; S3 through plain path-style HTTP."""

    def __init__(self, workdir):
        binary = os.path.join(VENV_BIN, "moto_server")
        if not os.path.exists(binary):
            binary = require("moto_server", "python3 -m venv .venv && .venv/bin/pip install 'moto[server]'")
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(self.port)],
                                        stdout=open(os.path.join(workdir, "moto.log"), "ab"), stderr=subprocess.STDOUT)
        for _ in range(600):
            try:
                urllib.request.urlopen(self.endpoint, timeout=1).read()
                break
            except Exception:
                time.sleep(0.05)

    def put(self, path, data=b""):
        # An explicit type: urllib's default (a form) makes moto read the body as form fields.
        request = urllib.request.Request(f"{self.endpoint}/{path}", data=data, method="PUT",
                                         headers={"Content-Type": "application/octet-stream"})
        urllib.request.urlopen(request, timeout=30).read()

    def stop(self):
        self.process.terminate()
        self.process.wait()


def measure(binary, moto, key, workdir):
    """One SQS worker invocation of `binary` syncing mapping 0; returns its figures."""
    message = {"version": 1, "run_id": "bench", "config": {"bucket": BUCKET, "key": key}, "mapping": 0,
               "mapping_key": f"{REPOSITORY} -> {REPOSITORY}"}
    event = {"Records": [{"messageId": "record-0", "receiptHandle": "r", "body": json.dumps(message),
                          "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
                          "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:ocync-work",
                          "awsRegion": "us-east-1"}]}
    api = RuntimeApi(event)
    env = {
        "PATH": os.environ["PATH"],
        "AWS_LAMBDA_RUNTIME_API": api.address,
        "AWS_LAMBDA_FUNCTION_NAME": "ocync",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/ocync",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
        "AWS_ENDPOINT_URL": moto.endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/nonexistent/ocync-bench-aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/ocync-bench-aws-credentials",
        "AWS_S3_FORCE_PATH_STYLE": "true",
        "OCYNC_CONFIG": f"s3://{BUCKET}/{key}",
    }
    command, emulated = command_for(binary)
    log_path = os.path.join(workdir, f"bootstrap-{elf_arch(binary)}-{key}.log")
    with open(log_path, "wb") as log:
        started = time.monotonic()
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        api.pid = process.pid
        try:
            while api.first_next is None and process.poll() is None and time.monotonic() - started < 300:
                time.sleep(0.001)
            init = (api.first_next or time.monotonic()) - started
            api.answered.wait(timeout=900)
            exited = process.poll()
        finally:
            process.terminate()
            process.wait()
            api.server.shutdown()
    if api.outcome is None:
        sys.exit(f"the function did not answer (exit {exited}); log: {log_path}")
    kind, body = api.outcome
    with open(log_path) as f:
        logged = [json.loads(line) for line in f if line.startswith("{")]
    ready = [line.get("fields", {}).get("init_ms") for line in logged
             if line.get("fields", {}).get("message") == "handler ready"]
    summary = [line.get("fields", {}) for line in logged if line.get("fields", {}).get("message") == "invocation summary"]
    failures = json.loads(body).get("batchItemFailures") if kind == "response" else None
    return {"arch": elf_arch(binary), "emulated": emulated, "size": os.path.getsize(binary), "zipped": zipped_size(binary), "init_s": init,
            "handler_init_ms": ready[0] if ready else None, "duration_s": api.duration, "cpu_s": api.cpu,
            "peak_mib": api.peak_kib / 1024, "ready_mib": api.ready_kib / 1024,
            "guest_mib": api.guest_kib / 1024, "answer": kind, "failures": failures,
            "summary": summary[0] if summary else None, "log": log_path}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", action="store_true", help="cargo lambda build each --arch first")
    parser.add_argument("--arch", action="append", choices=["arm64", "x86_64"],
                        help="binaries at target/lambda/<arch>/bootstrap (default: arm64 and x86_64)")
    parser.add_argument("--bootstrap", action="append", default=[], help="measure this binary too")
    parser.add_argument("--runs", type=int, default=3, help="invocations per binary, each into an empty target")
    parser.add_argument("--tags", type=int, default=3)
    parser.add_argument("--base-mib", type=int, default=20)
    args = parser.parse_args()
    require("docker-registry", "apt-get install -y docker-registry")
    testdata = os.path.join(ROOT, "target", "release", "ocync-testdata")
    if not os.path.exists(testdata):
        sys.exit("build first: cargo build --release --features testing --bins")

    binaries, builds = list(args.bootstrap), {}
    for arch in args.arch or ([] if args.bootstrap else ["arm64", "x86_64"]):
        if args.build:
            path, builds[arch] = build(arch)
        else:
            path = os.path.join(ROOT, "target", "lambda", arch, "bootstrap")
            if not os.path.exists(path):
                sys.exit(f"{path} is missing: run with --build")
        binaries.append(path)
    if "arm64" in builds and len(builds) > 1:  # cargo lambda's own output is the deployed (arm64) one
        shutil.copy2(os.path.join(ROOT, "target", "lambda", "arm64", "bootstrap"),
                     os.path.join(ROOT, "target", "lambda", "bootstrap", "bootstrap"))

    workdir = tempfile.mkdtemp(prefix="ocync-lambda-")
    moto, registries, rows = Moto(workdir), [], []
    try:
        moto.put(BUCKET)
        source = Registry(workdir, "source")
        registries.append(source)
        subprocess.check_call([testdata, "corpus", f"http://{source.host}", "--repositories", "1",
                               "--tags", str(args.tags), "--base-mib", str(args.base_mib)], stdout=subprocess.DEVNULL)
        tags = tags_of(source.host, REPOSITORY)
        blobs = {}
        for tag in tags:
            blobs.update(image_shape(source.host, REPOSITORY, tag)[2])
        mib = sum(blobs.values()) / 2**20
        for n, binary in enumerate(binaries):
            runs = []
            for run in range(args.runs):
                target = Registry(workdir, f"target-{n}-{run}")
                registries.append(target)
                config = (f"registries:\n  src: {{ url: \"http://{source.host}\" }}\n"
                          f"  dst: {{ url: \"http://{target.host}\" }}\n"
                          f"defaults: {{ source: src, targets: dst }}\nmappings:\n  - from: {REPOSITORY}\n")
                # A key per run: moto refuses an unsigned overwrite once the function has read it.
                key = f"ocync-{n}-{run}.yaml"
                moto.put(f"{BUCKET}/{key}", config.encode())
                row = measure(binary, moto, key, workdir)
                row["correct"] = all(digest(target.host, REPOSITORY, t) == digest(source.host, REPOSITORY, t)
                                     for t in tags)
                runs.append(row)
                target.stop()
                registries.remove(target)
                shutil.rmtree(os.path.join(target.dir, "data"), ignore_errors=True)
            rows.append(runs)
    finally:
        for r in registries:
            r.stop()
        moto.stop()
        for name in os.listdir(workdir):  # the registries' storage; the logs stay
            shutil.rmtree(os.path.join(workdir, name, "data"), ignore_errors=True)

    print(f"\none worker invocation (SQS, 1 record) per run, each into an empty target: {REPOSITORY}, "
          f"{len(tags)} tags, {len(blobs)} blobs, {mib:.1f} MiB; medians of {args.runs} runs (min–max)\n")
    print("| architecture | bootstrap MiB (zip) | build s | init ms | invocation s | invocation CPU s | RSS when ready MiB | peak RSS MiB | correct |")
    print("|---|---|---|---|---|---|---|---|---|")

    def spread(values, scale, digits):
        values = sorted(v * scale for v in values)
        return f"{statistics.median(values):.{digits}f} ({values[0]:.{digits}f}–{values[-1]:.{digits}f})"

    for runs in rows:
        first = runs[0]
        note = " (qemu-user)" if first["emulated"] else ""
        build_s = f"{builds[first['arch']]:.0f}" if first["arch"] in builds else "–"
        correct = all(r["correct"] and r["answer"] == "response" and r["failures"] == [] for r in runs)
        print(f"| {first['arch']}{note} | {first['size'] / 2**20:.1f} ({first['zipped'] / 2**20:.1f}) | {build_s} | {spread([r['init_s'] for r in runs], 1000, 0)} "
              f"| {spread([r['duration_s'] for r in runs], 1, 2)} | {spread([r['cpu_s'] for r in runs], 1, 2)} | {spread([r['ready_mib'] for r in runs], 1, 1)} | {spread([r['peak_mib'] for r in runs], 1, 1)} | {correct} |")
    for runs in rows:
        if runs[0]["emulated"]:
            print(f"{runs[0]['arch']} under qemu-user: of the process's RSS when it answered, the guest's own mappings "
                  f"held {spread([r['guest_mib'] for r in runs], 1, 1)} MiB (the rest is qemu and its translated code)")
    for runs in rows:
        for row in runs:
            print(f"{row['arch']}: {row['answer']}, handler ready after {row['handler_init_ms']} ms, "
                  f"summary {json.dumps(row['summary'])}, log {row['log']}")
    if not all(r["correct"] and r["answer"] == "response" and r["failures"] == [] for runs in rows for r in runs):
        sys.exit("a run did not sync every tag with the source digest")

if __name__ == "__main__":
    main()
