"""A multi-node Ray cluster on one machine: a head and N workers, each its own `ray start`.

Each node has its own temp dir, ports and logical resources, so the app can be placed as
on a real cluster (front end on the head, Classifier replicas on workers) and a worker
can be killed abruptly to see what Serve does. `emotion-monitor cluster up|status|kill|down`
drives it from a shell; the cluster tests drive it from Python.

Every node runs `ray start --block` in a session of its own: killing that session's
process group (and the node's processes, found by their temp dir) is a node crash, and
nothing else on the machine (another Ray, a test session's Ray) is touched.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from tooling.net import free_port

log = logging.getLogger("emotion_monitor.cluster")

STATE_FILE = "cluster.json"


class ClusterError(RuntimeError):
    """The local cluster could not be started, reached or changed as asked."""


@dataclass
class NodeInfo:
    name: str
    pid: int  # the `ray start --block` process, leader of the node's own session
    temp_dir: str
    log: str
    num_cpus: int
    resources: dict[str, float] = field(default_factory=dict)


@dataclass
class ClusterState:
    root: str
    gcs_port: int
    dashboard_port: int
    nodes: list[NodeInfo] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"


def marker(name: str) -> str:
    return f"emc_{name}"


def _ray_bin() -> str:
    exe = Path(sys.executable).parent / "ray"
    return str(exe) if exe.is_file() else "ray"


def _node_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    env.setdefault("RAY_AUTH_MODE", "disabled")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


class RayDashboard:
    """What a running Ray cluster says through its dashboard's HTTP API: its nodes and its
    Serve applications; and `serve deploy` to it."""

    def __init__(self, url: str) -> None:
        self.url = url

    def nodes(self) -> list[dict[str, Any]]:
        """The GCS's view: one dict per node (state ALIVE/DEAD, node_id, resources_total)."""
        r = httpx.get(f"{self.url}/api/v0/nodes", params={"limit": 100}, timeout=10)
        r.raise_for_status()
        return list(r.json()["data"]["result"]["result"])

    def alive_nodes(self) -> list[dict[str, Any]]:
        try:
            return [n for n in self.nodes() if n.get("state") == "ALIVE"]
        except (httpx.HTTPError, KeyError):
            return []

    def serve_apps(self) -> dict[str, Any]:
        r = httpx.get(f"{self.url}/api/serve/applications/", timeout=10)
        r.raise_for_status()
        return dict(r.json().get("applications") or {})

    def replicas(self, app: str, deployment: str) -> list[dict[str, Any]]:
        """The deployment's replicas as Serve reports them (state, node_id, actor_name)."""
        dep = self.serve_apps().get(app, {}).get("deployments", {}).get(deployment, {})
        return list(dep.get("replicas", []))

    def deploy(self, config: Path, timeout_s: float = 180.0) -> None:
        """`serve deploy` a config and wait until the apps run (or fail)."""
        serve_bin = Path(sys.executable).parent / "serve"
        exe = str(serve_bin) if serve_bin.is_file() else "serve"
        out = subprocess.run(
            [exe, "deploy", str(config), "--address", self.url],
            capture_output=True,
            text=True,
            env=_node_env(),
            timeout=120,
        )
        if out.returncode != 0:
            raise ClusterError(f"serve deploy failed: {out.stderr[-2000:]}")
        deadline = time.monotonic() + timeout_s
        states: dict[str, Any] = {}
        while time.monotonic() < deadline:
            apps = self.serve_apps()
            states = {name: a.get("status") for name, a in apps.items()}
            if apps and all(v == "RUNNING" for v in states.values()):
                return
            failed = {
                n: a.get("message", "")[-1500:] for n, a in apps.items() if a.get("status") == "DEPLOY_FAILED"
            }
            if failed:
                raise ClusterError(f"deploy failed: {failed}")
            time.sleep(1.0)
        raise ClusterError(f"apps not running after {timeout_s:.0f} s: {states}")


class LocalCluster:
    """Start, inspect, break and stop a head plus workers under `root`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.state: ClusterState | None = None
        state_file = self.root / STATE_FILE
        if state_file.is_file():
            raw = json.loads(state_file.read_text())
            nodes = [NodeInfo(**n) for n in raw.pop("nodes")]
            self.state = ClusterState(**raw, nodes=nodes)

    # -- lifecycle -----------------------------------------------------------------------
    def up(
        self,
        workers: int = 2,
        head_cpus: int = 2,
        worker_cpus: int = 2,
        head_resources: dict[str, float] | None = None,
        worker_resources: dict[str, float] | None = None,
        timeout_s: float = 180.0,
    ) -> ClusterState:
        if self.state is not None and self.alive_nodes():
            raise ClusterError(f"a cluster is already running under {self.root}; `down` it first")
        self.root.mkdir(parents=True, exist_ok=True)
        self.state = ClusterState(str(self.root), free_port(), free_port())
        self._start_node("head", head_cpus, head_resources or {"frontend": 100}, head=True)
        self._save()
        for i in range(1, workers + 1):
            self.add_worker(f"worker{i}", worker_cpus, worker_resources or {"classifier": 2})
        self.wait_for_nodes(workers + 1, timeout_s)
        return self.state

    def add_worker(self, name: str, num_cpus: int = 2, resources: dict[str, float] | None = None) -> NodeInfo:
        node = self._start_node(name, num_cpus, resources or {"classifier": 2}, head=False)
        self._save()
        return node

    def _start_node(self, name: str, num_cpus: int, resources: dict[str, float], head: bool) -> NodeInfo:
        st = self._need_state()
        if any(n.name == name for n in st.nodes):
            raise ClusterError(f"node {name!r} exists already")
        # Unix socket paths must stay short (about 107 bytes), so temp dirs live in /tmp.
        temp_dir = Path(f"/tmp/emc-{st.gcs_port}-{name}")
        shutil.rmtree(temp_dir, ignore_errors=True)
        log = self.root / f"{name}.log"
        # A marker resource names the node, so its Ray node id can be found (node_ids()).
        resources = {**resources, marker(name): 1.0}
        cmd = [
            _ray_bin(),
            "start",
            "--block",
            "--disable-usage-stats",
            "--node-ip-address=127.0.0.1",
            f"--temp-dir={temp_dir}",
            f"--num-cpus={num_cpus}",
            "--num-gpus=0",
            f"--resources={json.dumps(resources)}",
            f"--node-manager-port={free_port()}",
            f"--object-manager-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            "--object-store-memory=200000000",
        ]
        if head:
            cmd += [
                "--head",
                f"--port={st.gcs_port}",
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={st.dashboard_port}",
                f"--ray-client-server-port={free_port()}",
            ]
        else:
            cmd.append(f"--address={st.address}")
        with log.open("ab") as fh:
            proc = subprocess.Popen(
                cmd, stdout=fh, stderr=subprocess.STDOUT, env=_node_env(), start_new_session=True
            )
        node = NodeInfo(name, proc.pid, str(temp_dir), str(log), num_cpus, dict(resources))
        st.nodes.append(node)
        if head:
            self._wait_dashboard(120.0, proc)
        return node

    def kill(self, name: str) -> int:
        """Crash a node: SIGKILL to all of its processes at once. Returns how many."""
        node = next((n for n in self._need_state().nodes if n.name == name), None)
        if node is None:
            raise ClusterError(f"no node {name!r}; nodes: {[n.name for n in self._need_state().nodes]}")
        victims = self._processes(node)
        for p in victims:
            with contextlib.suppress(psutil.Error):
                p.send_signal(signal.SIGKILL)
        psutil.wait_procs(victims, timeout=10)
        return len(victims)

    def down(self) -> None:
        """Stop the apps gracefully (`serve shutdown`: replicas drain and hand held records
        over), then every node (SIGTERM, then SIGKILL after 15 s), and remove the temp dirs."""
        st = self.state
        if st is None:
            return
        serve_bin = Path(sys.executable).parent / "serve"
        try:
            subprocess.run(
                [
                    str(serve_bin) if serve_bin.is_file() else "serve",
                    "shutdown",
                    "-y",
                    "--address",
                    st.dashboard_url,
                ],
                capture_output=True,
                env=_node_env(),
                timeout=90,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("serve shutdown before stopping the nodes failed: %r", exc)
        for node in reversed(st.nodes):
            procs = self._processes(node)
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    p.terminate()
            _, alive = psutil.wait_procs(procs, timeout=15)
            for p in alive:
                with contextlib.suppress(psutil.Error):
                    p.kill()
            shutil.rmtree(node.temp_dir, ignore_errors=True)
        (self.root / STATE_FILE).unlink(missing_ok=True)
        self.state = None

    @property
    def dashboard(self) -> RayDashboard:
        return RayDashboard(self._need_state().dashboard_url)

    def alive_nodes(self) -> list[dict[str, Any]]:
        try:
            return self.dashboard.alive_nodes()
        except ClusterError:
            return []

    def node_ids(self) -> dict[str, str]:
        """Our node name -> Ray node id, matched by the node's distinct custom resources."""
        out: dict[str, str] = {}
        for n in self.dashboard.alive_nodes():
            total = n.get("resources_total", {})
            for mine in self._need_state().nodes:
                if total.get(marker(mine.name)):
                    out[mine.name] = n["node_id"]
        return out

    def wait_for_nodes(self, alive: int, timeout_s: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.alive_nodes()
            if len(found) == alive:
                return found
            time.sleep(1.0)
        logs = {
            n.name: Path(n.log).read_text()[-1500:] for n in self._need_state().nodes if Path(n.log).is_file()
        }
        raise ClusterError(f"expected {alive} alive nodes after {timeout_s:.0f} s; logs: {logs}")

    def status(self) -> dict[str, Any]:
        st = self._need_state()
        alive = {n.get("node_id"): n for n in self.alive_nodes()}
        return {
            "address": st.address,
            "dashboard": st.dashboard_url,
            "nodes": [
                {"name": n.name, "pid": n.pid, "cpus": n.num_cpus, "resources": n.resources, "log": n.log}
                for n in st.nodes
            ],
            "alive": len(alive),
        }

    # -- internals -----------------------------------------------------------------------
    def _need_state(self) -> ClusterState:
        if self.state is None:
            raise ClusterError(f"no cluster under {self.root}; start one with `emotion-monitor cluster up`")
        return self.state

    def _save(self) -> None:
        st = self._need_state()
        (self.root / STATE_FILE).write_text(json.dumps(asdict(st), indent=2))

    def _processes(self, node: NodeInfo) -> list[psutil.Process]:
        """The node's `ray start`, everything under it, and every process using its temp dir
        (Ray daemonizes some children; the temp dir names this node and no other)."""
        found: dict[int, psutil.Process] = {}
        try:
            leader = psutil.Process(node.pid)
            found[leader.pid] = leader
            for child in leader.children(recursive=True):
                found[child.pid] = child
        except psutil.Error:
            pass
        for p in psutil.process_iter(["pid", "cmdline"]):
            try:
                cmd = " ".join(p.info["cmdline"] or [])
            except psutil.Error:
                continue
            if node.temp_dir in cmd and p.pid != os.getpid():
                found[p.pid] = p
                try:
                    for child in p.children(recursive=True):
                        found[child.pid] = child
                except psutil.Error:
                    pass
        return list(found.values())

    def _wait_dashboard(self, timeout_s: float, proc: subprocess.Popen[bytes]) -> None:
        st = self._need_state()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ClusterError(f"the head node exited ({proc.returncode}); see {self.root / 'head.log'}")
            try:
                if httpx.get(f"{st.dashboard_url}/api/v0/nodes", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1.0)
        raise ClusterError(
            f"the head's dashboard did not answer in {timeout_s:.0f} s; see {self.root / 'head.log'}"
        )
