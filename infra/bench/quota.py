"""The shared-quota scenario: N `ocync sync` processes writing into one registry account.

A registry enforces its quotas per account, not per client (ECR's PutImage is about 10 per
second per account and region). Here one local docker-registry sits behind a small proxy that
admits a shared number of requests per second of one kind — manifest PUTs, or upload
initiations (`POST …/blobs/uploads/`, mounts included, as ECR's InitiateLayerUpload) — and
answers the rest 429 with `Retry-After: 1`. N workers each sync a disjoint share of the
mappings, as N Lambda invocations would. Per N it reports the wall time against the
quota-bound ideal (admitted requests ÷ quota), throttled answers per admitted request, each
worker's exit code and whether every tag landed with the source digest.

The proxy is loopback only, streams bodies in 64 KiB blocks (nothing is buffered whole), and
holds at most MAX_CONNECTIONS client connections. Only the standard library.
"""

import http.client
import http.server
import json
import os
import re
import signal
import socketserver
import subprocess
import threading
import time

from common import digest, free_port, image_shape, tags_of

VARIANTS = {
    # ECR PutImage: one per manifest (each child of an index and the index itself).
    "manifests": ("PUT", re.compile(r"^/v2/.+/manifests/[^/?]+$")),
    # ECR InitiateLayerUpload: every upload session, and distribution's mount POSTs too.
    "uploads": ("POST", re.compile(r"^/v2/.+/blobs/uploads/?(\?.*)?$")),
}
BLOCK = 64 * 1024
# A thread per client connection, at most this many (twelve workers with a few dozen
# connections each fit); beyond it a connection is closed at once rather than given a thread.
MAX_CONNECTIONS = 512
# Headers that belong to one hop and are not forwarded (RFC 9110 §7.6.1).
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
THROTTLED_BODY = json.dumps({"errors": [{
    "code": "TOOMANYREQUESTS", "message": "shared account quota exceeded", "detail": None}]}).encode()


class Bucket:
    """A token bucket shared by every client: `rate` tokens a second, at most `rate` saved (a
    one-second burst, as a per-account quota allows)."""

    def __init__(self, rate):
        self.rate = float(rate)
        self.tokens = self.rate
        self.stamp = time.monotonic()
        self.lock = threading.Lock()

    def take(self):
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            return False


class QuotaProxy(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """Forwards everything to `upstream` (host:port), except the requests of `variant` beyond
    the bucket, which it answers 429. Counts admitted and throttled requests of that kind."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, upstream, variant, rate):
        self.upstream = upstream
        self.method, self.pattern = VARIANTS[variant]
        self.bucket = Bucket(rate)
        self.admitted = 0
        self.throttled = 0
        self.forwarded = 0
        self.connections = 0
        self.peak_connections = 0
        self.counts = threading.Lock()
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(("127.0.0.1", free_port()), _Handler)
        self.host = f"127.0.0.1:{self.server_address[1]}"
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def limited(self, method, path):
        return method == self.method and self.pattern.match(path) is not None

    def count(self, field):
        with self.counts:
            setattr(self, field, getattr(self, field) + 1)

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        with self.counts:
            self.connections += 1
            self.peak_connections = max(self.peak_connections, self.connections)
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.counts:
                self.connections -= 1
            self.slots.release()

    def stop(self):
        self.shutdown()
        self.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # An idle keep-alive connection frees its thread after this many seconds.
    timeout = 60

    def log_message(self, *args):
        pass

    def body(self):
        """The request body as blocks, decoded from chunked framing when it comes that way."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline(1024).split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                while size:
                    block = self.rfile.read(min(size, BLOCK))
                    if not block:
                        raise ConnectionError("request body ended early")
                    size -= len(block)
                    yield block
                self.rfile.readline(1024)
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left:
                block = self.rfile.read(min(left, BLOCK))
                if not block:
                    raise ConnectionError("request body ended early")
                left -= len(block)
                yield block

    def handle_any(self):
        server = self.server
        if server.limited(self.command, self.path) and not server.bucket.take():
            for _ in self.body():
                pass
            server.count("throttled")
            self.send_response_only(429, "Too Many Requests")
            for name, value in (("Content-Type", "application/json"), ("Retry-After", "1"),
                                ("Docker-Distribution-API-Version", "registry/2.0"),
                                ("Content-Length", str(len(THROTTLED_BODY)))):
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(THROTTLED_BODY)
            return
        if server.limited(self.command, self.path):
            server.count("admitted")
        server.count("forwarded")
        self.forward()

    def forward(self):
        # A fresh upstream connection per request: a streamed body cannot be replayed on a
        # kept-alive connection the registry closed meanwhile, and loopback connects are cheap.
        upstream = http.client.HTTPConnection(self.server.upstream, timeout=120)
        try:
            chunked = self.headers.get("Transfer-Encoding", "").lower() == "chunked"
            # The client's Host goes through, so the registry's Location URLs name the proxy.
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    upstream.putheader(name, value)
            if chunked:
                upstream.putheader("Transfer-Encoding", "chunked")
            upstream.endheaders()
            for block in self.body():
                upstream.send(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
            if chunked:
                upstream.send(b"0\r\n\r\n")
            answer = upstream.getresponse()
            self.send_response_only(answer.status, answer.reason)
            length = answer.getheader("Content-Length")
            bodiless = self.command == "HEAD" or answer.status in (204, 304)
            for name, value in answer.getheaders():
                if name.lower() not in HOP_BY_HOP:
                    self.send_header(name, value)
            if length is None and not bodiless:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if bodiless:
                return
            while True:
                block = answer.read(BLOCK)
                if not block:
                    break
                self.wfile.write(block if length is not None else b"%x\r\n%s\r\n" % (len(block), block))
            if length is None:
                self.wfile.write(b"0\r\n\r\n")
        finally:
            upstream.close()

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = handle_any


def sync_workers(ocync, workdir, source, target, repositories, workers, timeout):
    """Starts `workers` ocync sync processes at once, each with every workers-th repository;
    returns (wall seconds until the last one ended, [exit code or "timeout"], peak RSS MiB)."""
    processes = []
    for index in range(workers):
        share = repositories[index::workers]
        config = os.path.join(workdir, f"quota-{time.time_ns()}-{index}.yaml")
        with open(config, "w") as f:
            f.write(f'registries:\n  src: {{ url: "http://{source}" }}\n  dst: {{ url: "http://{target}" }}\n'
                    "defaults:\n  source: src\n  targets: [dst]\nmappings:\n")
            f.writelines(f"  - from: {r}\n" for r in share)
        measured = config + ".time"
        log = open(config + ".log", "wb")
        # Each worker leads its own process group, so a stuck one is killed with its child.
        process = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", measured, ocync, "sync", "--config", config],
                                   stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        processes.append((process, measured, log))
    start = time.monotonic()
    codes, rss = [], 0.0
    for process, measured, log in processes:
        try:
            codes.append(process.wait(timeout=max(1.0, start + timeout - time.monotonic())))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            codes.append("timeout")
        log.close()
        if os.path.exists(measured):
            with open(measured) as f:
                lines = f.read().split()
            rss = max(rss, int(lines[-1]) / 1024 if lines and lines[-1].isdigit() else 0)
    return time.monotonic() - start, codes, rss


def run(ocync, testdata, workdir, registry, run_index, options):
    """One pass over every variant and worker count against a fresh corpus; a result dict per
    (variant, N). `registry(name)` starts a registry the caller stops."""
    source = registry("quota-source")
    repositories = [f"bench/repo-{n:02}" for n in range(options.quota_repositories)]
    subprocess.check_call([testdata, "corpus", f"http://{source.host}", "--repositories",
                           str(options.quota_repositories), "--tags", str(options.quota_tags),
                           "--base-mib", "1"], stdout=subprocess.DEVNULL)
    shapes = {(r, t): image_shape(source.host, r, t) for r in repositories for t in tags_of(source.host, r)}
    expected = {key: shape[0] for key, shape in shapes.items()}
    blobs = {}
    for (r, _), (_, _, image_blobs) in shapes.items():
        blobs.setdefault(r, set()).update(image_blobs)
    # What a complete mirror into an empty target cannot do without: a PUT per manifest, and
    # an upload session (or mount) per blob and repository.
    needed = {"manifests": sum(count for _, count, _ in shapes.values()),
              "uploads": sum(len(b) for b in blobs.values())}
    results = []
    for variant in options.quota_on or list(VARIANTS):
        for workers in options.workers:
            target = registry(f"quota-{variant}-{workers}")
            proxy = QuotaProxy(target.host, variant, options.quota)
            try:
                wall, codes, rss = sync_workers(ocync, workdir, source.host, proxy.host, repositories,
                                                workers, options.quota_timeout)
            finally:
                proxy.stop()
            landed = sum(digest(target.host, r, t) == d for (r, t), d in expected.items())
            target.stop()
            results.append({
                "scenario": "quota", "variant": variant, "workers": workers, "run": run_index,
                "quota_per_s": options.quota, "wall_s": round(wall, 2),
                "ideal_s": round(proxy.admitted / options.quota, 2), "admitted": proxy.admitted,
                "needed": needed[variant],
                "throttled": proxy.throttled, "forwarded": proxy.forwarded,
                "peak_connections": proxy.peak_connections, "exits": codes,
                "rss_mib": round(rss, 1), "tags": len(expected), "landed": landed,
                "correct": landed == len(expected) and all(code == 0 for code in codes),
            })
    source.stop()
    return results


def table(results):
    """A markdown row per variant, N and run."""
    lines = ["| quota on | workers | wall s | ideal s (admitted ÷ quota) | wall ÷ ideal | admitted (needed) "
             "| throttled | throttled ÷ admitted | exit codes | tags landed |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append("| {} ({:g}/s) | {} | {:.1f} | {:.1f} | {} | {} ({}) | {} | {} | {} | {}/{} |".format(
            r["variant"], r["quota_per_s"], r["workers"], r["wall_s"], r["ideal_s"],
            f"{r['wall_s'] / r['ideal_s']:.2f}" if r["ideal_s"] else "–", r["admitted"], r["needed"], r["throttled"],
            f"{r['throttled'] / r['admitted']:.2f}" if r["admitted"] else "–",
            " ".join(str(c) for c in r["exits"]), r["landed"], r["tags"]))
    return "\n".join(lines)


def goals(results, workers=6):
    """Issue 20's targets for `workers` processes, each as (goal, measured, met)."""
    checks = []
    for r in results:
        if r["workers"] != workers:
            continue
        name = f"quota {r['variant']}, {workers} workers"
        checks.append((f"{name}: every worker exits 0, every tag lands",
                       f"exits {' '.join(map(str, r['exits']))}; {r['landed']}/{r['tags']}", r["correct"]))
        if r["ideal_s"]:
            ratio = r["wall_s"] / r["ideal_s"]
            # A run that gave up early is quick, not fast: it meets no time goal.
            checks.append((f"{name}: wall ≤ 1.5 × ideal", f"{ratio:.2f}{'' if r['correct'] else ' (incomplete)'}",
                           r["correct"] and ratio <= 1.5))
        if r["admitted"]:
            ratio = r["throttled"] / r["admitted"]
            checks.append((f"{name}: throttled ≤ 0.5 × admitted", f"{ratio:.2f}", ratio <= 0.5))
    return checks
