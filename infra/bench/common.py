"""What the benchmark scenarios share: local CNCF distribution registries with access logs,
and the few registry API reads that check what landed. Only the standard library."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
LOG_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>/v2/[^ ?]*)[^"]*" (?P<status>\d{3}) (?P<size>\d+|-)')


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require(tool, hint):
    path = shutil.which(tool)
    if not path:
        sys.exit(f"{tool} is not installed: {hint}")
    return path


class Registry:
    """A docker-registry on a free loopback port with temp storage; stopped by PID."""

    def __init__(self, workdir, name):
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir)
        self.log = os.path.join(self.dir, "access.log")
        config = os.path.join(self.dir, "config.yml")
        with open(config, "w") as f:
            f.write(
                "version: 0.1\nlog: {level: info, formatter: text, accesslog: {disabled: false}}\n"
                f"storage: {{filesystem: {{rootdirectory: {self.dir}/data}}, delete: {{enabled: true}}}}\n"
                f"http: {{addr: {self.host}, secret: bench}}\n"
            )
        self.process = subprocess.Popen(
            [require("docker-registry", "apt-get install -y docker-registry"), "serve", config],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        self.mark()

    def mark(self):
        with open(self.log, "rb") as f:
            self.offset = len(f.read())
        self.cpu_mark = self.cpu()

    def cpu(self):
        """CPU seconds (user + system) the registry process has used so far."""
        with open(f"/proc/{self.process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def cpu_since_mark(self):
        return self.cpu() - self.cpu_mark

    def requests(self):
        """(method, path, status, size) served since the last mark."""
        with open(self.log, "rb") as f:
            f.seek(self.offset)
            text = f.read().decode("utf-8", "replace")
        out = []
        for match in LOG_LINE.finditer(text):
            size = match["size"]
            out.append((match["method"], match["path"], int(match["status"]), 0 if size == "-" else int(size)))
        return out

    def stop(self):
        """Stops the registry and deletes its storage: blobs left behind in the work directory
        slow every later write on this machine (its sys time grows with the memory in use), so
        each scenario starts as clean as the first."""
        self.process.terminate()
        self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def http(method, url):
    request = urllib.request.Request(url, method=method, headers={"Accept": ACCEPT})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.headers, answer.read()


def digest(host, repository, tag):
    try:
        headers, _ = http("HEAD", f"http://{host}/v2/{repository}/manifests/{tag}")
        return headers.get("Docker-Content-Digest")
    except Exception:
        return None


def tags_of(host, repository):
    _, body = http("GET", f"http://{host}/v2/{repository}/tags/list")
    return sorted(json.loads(body).get("tags") or [])


def image_shape(host, repository, reference):
    """(digest, manifest count, {blob digest: size}) of one image, children included."""
    headers, body = http("GET", f"http://{host}/v2/{repository}/manifests/{reference}")
    manifest = json.loads(body)
    count, blobs = 1, {}
    for child in manifest.get("manifests", []):
        _, child_count, child_blobs = image_shape(host, repository, child["digest"])
        count += child_count
        blobs.update(child_blobs)
    for blob in [manifest.get("config")] + manifest.get("layers", []):
        if blob:
            blobs[blob["digest"]] = blob["size"]
    return headers.get("Docker-Content-Digest"), count, blobs
