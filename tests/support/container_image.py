"""The Docker image under podman for the image smoke test (tests/integration/test_docker_image.py) and CI.

No container registry is reachable from CI's machines, so `python:3.11-slim` cannot be pulled. Instead this module
makes a local stand-in with debootstrap from the Debian mirror the host's apt uses: bookworm's minbase variant with
Debian's python3.11, and a venv at /usr/local (its bin/ is on PATH first, as in the official image), so `python`
and `pip` are there and `pip install .` writes to the venv, which PEP 668's externally-managed marker does not
cover (no PIP_BREAK_SYSTEM_PACKAGES needed). It is tagged `docker.io/library/python:3.11-slim` in podman's own
storage, so the project's Dockerfile builds unchanged with `--pull=never`, and a second run finds it there.

Debian's podman runs rootful (CI is root) with runc, cgroupfs and the file event logger; every run and build gets
explicit ulimits within the process's hard limits (ulimits()).

`python -m tests.support.container_image` installs podman and its helpers and makes the base image (CI's install
phase); it prints nothing unless something fails."""
from __future__ import annotations

import fcntl
import os
import re
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.loopback import free_port, http_request

BASE_IMAGE = "docker.io/library/python:3.11-slim"
# bumped whenever the recipe below changes, so that an older stand-in is made again
BASE_RECIPE = "spasm-cds-debootstrap-1"
BASE_LABEL = "org.spasm-cds.base-recipe"
TEST_LABEL = "org.spasm-cds.test=1"
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# what the base adds to minbase: python3.11 with venv/ensurepip (python3.11-venv needs python3.11-distutils,
# which only python3-distutils provides: debootstrap does not resolve virtual packages), and the CA bundle for pip
BASE_PACKAGES = ("python3.11", "python3.11-venv", "python3-distutils", "ca-certificates")
# podman with runc; uidmap, fuse-overlayfs and slirp4netns for rootless use; netavark, aardvark-dns and the CNI
# plugins for its networks; catatonit for --init; debootstrap for the base image
PACKAGES = ("podman", "runc", "conmon", "uidmap", "fuse-overlayfs", "slirp4netns", "netavark", "aardvark-dns",
            "containernetworking-plugins", "catatonit", "debootstrap")
PODMAN = ("podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs", "--events-backend", "file")
INSTALL_TIMEOUT_S = 900.0
DEBOOTSTRAP_TIMEOUT_S = 900.0
BUILD_TIMEOUT_S = 900.0
_LOCK = Path(tempfile.gettempdir()) / "spasm-cds-container-image.lock"


class PodmanUnavailable(RuntimeError):
    """podman is missing and cannot be installed here, or cannot work (no user namespaces, podman info fails)."""


def podman(*args: str, timeout_s: float = 120.0, check: bool = True,
           stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    """Run one podman command (runc, cgroupfs, file events) with its output captured; raise on failure if check."""
    done = subprocess.run([*PODMAN, *args], capture_output=True, timeout=timeout_s, stdin=stdin)
    result = subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(errors="replace"),
                                         done.stderr.decode(errors="replace"))
    if check and result.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:3])} ... exited {result.returncode}:\n{result.stdout[-3000:]}"
                           f"{result.stderr[-3000:]}")
    return result


def ulimits() -> list[str]:
    """--ulimit flags for nofile and nproc within this process's hard limits: podman's defaults (and the usual
    nofile=65536) exceed them on machines like CI's, where root lacks CAP_SYS_RESOURCE, and runc then refuses to
    start the container ("error setting rlimits")."""
    flags = []
    for name, kind, wanted in (("nofile", resource.RLIMIT_NOFILE, 65536), ("nproc", resource.RLIMIT_NPROC, 4096)):
        hard = resource.getrlimit(kind)[1]
        value = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        flags += ["--ulimit", f"{name}={value}:{value}"]
    return flags


def _missing_tools() -> list[str]:
    needed = {"podman": "podman", "runc": "runc", "debootstrap": "debootstrap", "newuidmap": "uidmap",
              "fuse-overlayfs": "fuse-overlayfs", "slirp4netns": "slirp4netns"}
    missing = [package for tool, package in needed.items() if shutil.which(tool) is None]
    if not Path("/usr/lib/podman/netavark").exists():
        missing.append("netavark")
    return missing


def _run_logged(command: list[str], timeout_s: float, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... exited {done.returncode}:\n{done.stdout[-2000:]}"
                           f"{done.stderr[-2000:]}")


def ensure_podman() -> None:
    """Install podman, runc, debootstrap and podman's helpers from Debian when any is missing (root only), then
    check that user namespaces are on and `podman info` works.

    Raises PodmanUnavailable when they are missing and cannot be installed, user namespaces are off, or podman
    cannot work here."""
    if _missing_tools():
        if os.geteuid() != 0:
            raise PodmanUnavailable(f"not installed and only root can install them: {' '.join(_missing_tools())}")
        with open(_LOCK, "w") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            if _missing_tools():
                env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
                apt = ["apt-get", "-o", "DPkg::Lock::Timeout=300"]
                try:
                    _run_logged([*apt, "update", "-q"], INSTALL_TIMEOUT_S, env)
                    _run_logged([*apt, "install", "-y", "-q", "--no-install-recommends", *PACKAGES],
                                INSTALL_TIMEOUT_S, env)
                except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
                    raise PodmanUnavailable(f"podman could not be installed: {error}") from error
    try:
        max_namespaces = int(Path("/proc/sys/user/max_user_namespaces").read_text())
    except (OSError, ValueError):
        max_namespaces = 1
    if max_namespaces == 0:
        raise PodmanUnavailable("user namespaces are off (user.max_user_namespaces = 0)")
    info = podman("info", "--format", "{{.Host.OCIRuntime.Name}}", check=False, timeout_s=60)
    if info.returncode != 0:
        raise PodmanUnavailable(f"podman info exited {info.returncode}: {info.stderr.strip()[-500:]}")


def remove_stale_containers() -> None:
    """Remove the test containers a killed test run left behind (their names carry the pid of a process that is
    gone), so that they hold no port or memory; those of runs still going are left alone."""
    found = podman("ps", "--all", "--filter", f"label={TEST_LABEL}", "--format", "{{.Names}}", check=False,
                   timeout_s=60)
    for name in found.stdout.split():
        pid = name.split("-")[-2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            podman("rm", "--force", "--time", "5", name, check=False, timeout_s=60)


def host_mirror() -> str:
    """The Debian mirror the host's apt uses for bookworm (deb822 or one-line sources), else deb.debian.org."""
    deb822 = Path("/etc/apt/sources.list.d/debian.sources")
    if deb822.exists():
        for stanza in deb822.read_text().split("\n\n"):
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.+)$", stanza, re.MULTILINE))
            if SUITE in fields.get("Suites", "").split() and fields.get("URIs"):
                return fields["URIs"].split()[0]
    one_line = Path("/etc/apt/sources.list")
    if one_line.exists():
        for line in one_line.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and parts[2] == SUITE:
                return parts[1]
    return DEFAULT_MIRROR


def base_image_ready() -> bool:
    """Whether podman's storage holds the stand-in of this recipe (or a real python:3.11-slim someone loaded)."""
    found = podman("image", "inspect", "--format", f"{{{{index .Labels \"{BASE_LABEL}\"}}}}", BASE_IMAGE,
                   check=False, timeout_s=60)
    if found.returncode != 0:
        return False
    label = found.stdout.strip()
    return label in (BASE_RECIPE, "", "<no value>")


def ensure_base_image() -> float:
    """Make and tag the python:3.11-slim stand-in unless podman already has it; return the seconds it took."""
    if base_image_ready():
        return 0.0
    with open(_LOCK, "w") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        if base_image_ready():
            return 0.0
        start = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix="spasm-cds-base-"))
        try:
            _make_base(work / "rootfs")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return time.monotonic() - start


def _make_base(root: Path) -> None:
    _run_logged(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE, str(root),
                 host_mirror()], DEBOOTSTRAP_TIMEOUT_S)
    # apt in the image reads the host's Debian sources and its local settings, the files no package owns (the same
    # mirror, reached the same way)
    for path in ("/etc/apt/sources.list", "/etc/apt/sources.list.d/debian.sources"):
        if Path(path).exists():
            shutil.copy(path, root / path.lstrip("/"))
    for conf in sorted(Path("/etc/apt/apt.conf.d").glob("*")):
        owned = subprocess.run(["dpkg", "-S", str(conf)], capture_output=True, timeout=60).returncode == 0
        if conf.is_file() and not owned:
            shutil.copy(conf, root / "etc/apt/apt.conf.d" / conf.name)
    # and trusts what the host trusts (a site's own CAs, e.g. for an https proxy between the build and PyPI)
    local_cas = list(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    for ca in local_cas:
        shutil.copy(ca, root / "usr/local/share/ca-certificates" / ca.name)
    chroot = ["chroot", str(root)]
    if local_cas:
        _run_logged([*chroot, "update-ca-certificates"], 120)
    # pip (vendored certifi) would not see the system bundle otherwise
    (root / "etc/pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
    _run_logged([*chroot, "python3.11", "-m", "venv", "/usr/local"], 300)
    _run_logged([*chroot, "apt-get", "clean"], 120)
    for leftover in ("var/lib/apt/lists", "var/cache/apt/archives", "var/log"):
        for item in (root / leftover).glob("*"):
            if item.is_file():
                item.unlink()
    changes = ["ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin", "ENV LANG=C.UTF-8",
               "ENV PYTHON_VERSION=3.11", f"LABEL {BASE_LABEL}={BASE_RECIPE}", 'CMD ["python3"]']
    flags = [arg for change in changes for arg in ("--change", change)]
    tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
    try:
        podman("import", *flags, "-", BASE_IMAGE, timeout_s=600, stdin=tar.stdout)
    finally:
        if tar.stdout is not None:
            tar.stdout.close()
        tar.wait(timeout=60)


def build_image(context: Path, tag: str, timeout_s: float = BUILD_TIMEOUT_S) -> float:
    """Build the project's Dockerfile from context as tag (docker format, so HEALTHCHECK is kept; host network for
    apt and pip; never pulling); return the seconds it took."""
    start = time.monotonic()
    podman("build", "--pull=never", "--format", "docker", "--network", "host", *ulimits(), "--tag", tag,
           str(context), timeout_s=timeout_s)
    return time.monotonic() - start


class Container:
    """One container of image, detached, its port published on 127.0.0.1 only, removed (podman rm -f) when the
    `with` block ends, however it ends. `url` is http://127.0.0.1:<host port>."""

    def __init__(self, image: str, env: dict[str, str] | None = None, port_inside: int = 8080,
                 volumes: tuple[str, ...] = ()) -> None:
        self.image = image
        self.env = env or {}
        self.port_inside = port_inside
        self.volumes = volumes
        self.name = f"spasm-cds-test-{os.getpid()}-{secrets.token_hex(4)}"
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Container:
        self.port = free_port()
        env = [arg for key, value in self.env.items() for arg in ("--env", f"{key}={value}")]
        mounts = [arg for volume in self.volumes for arg in ("--volume", volume)]
        try:
            podman("run", "--detach", "--name", self.name, "--label", TEST_LABEL, *ulimits(), *env,
                   *mounts, "--publish", f"127.0.0.1:{self.port}:{self.port_inside}", self.image, timeout_s=120)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        podman("rm", "--force", "--time", "5", self.name, check=False, timeout_s=60)

    def wait_ok(self, path: str = "/healthz", timeout_s: float = 60.0) -> None:
        """Poll path until it answers 200; raise with the container's log if it exits or the time is up."""
        deadline = time.monotonic() + timeout_s
        last = "no connection"
        while time.monotonic() < deadline:
            try:
                status = http_request("GET", self.url + path, timeout_s=2.0)[0]
                if status == 200:
                    return
                last = f"HTTP {status}"
            except OSError as error:
                last = str(error)
            if self.state() not in ("running", "created"):
                break
            time.sleep(0.2)
        raise RuntimeError(f"{self.image} never answered 200 on {path} (last: {last}, state {self.state()}); "
                           f"log tail:\n{self.logs()[-3000:]}")

    def wait_exit(self, timeout_s: float = 60.0) -> int:
        """The container's exit code, waiting at most timeout_s for it to stop."""
        return int(podman("wait", self.name, timeout_s=timeout_s).stdout.strip())

    def state(self) -> str:
        return podman("inspect", "--format", "{{.State.Status}}", self.name, check=False, timeout_s=30).stdout.strip()

    def logs(self) -> str:
        done = podman("logs", self.name, check=False, timeout_s=30)
        return done.stdout + done.stderr

    def exec(self, *command: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run command in the container (as the image's user) and return what it did, whatever its exit code."""
        return podman("exec", self.name, *command, check=False, timeout_s=timeout_s)

    def healthcheck(self, timeout_s: float = 30.0) -> tuple[int, str]:
        """Run the image's HEALTHCHECK now (`podman healthcheck run`): its exit code and the recorded status."""
        code = podman("healthcheck", "run", self.name, check=False, timeout_s=timeout_s).returncode
        status = podman("inspect", "--format", "{{.State.Healthcheck.Status}}", self.name, check=False,
                        timeout_s=30).stdout.strip()
        return code, status


def main() -> int:
    """CI's install step: podman and the base image, quiet unless something fails. A failure is reported, not
    fatal: the image test tries again and fails (under CI) with the details, while the rest of the suite runs."""
    try:
        ensure_podman()
        ensure_base_image()
    except (PodmanUnavailable, RuntimeError, OSError, subprocess.TimeoutExpired) as error:
        print(f"container_image: {type(error).__name__}: {str(error)[-2000:]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
