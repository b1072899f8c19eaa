"""A local Redis Cluster of three masters for the tests: three `redis-server --cluster-enabled yes`
on free ports in a temporary directory, joined by `redis-cli --cluster create`, no replicas, no
persistence. Started once per test session (tests/conftest.py `redis_cluster`), killed at the end.

Each server is a child process whose readiness is its own "Ready to accept connections" line
(tests/faults/servers.py); the cluster is ready when every node has logged "Cluster state changed:
ok" and knows all three masters.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import redis

from tests.faults.servers import Process, free_port, require_binary

MASTERS = 3
READY_TIMEOUT_S = 30.0


class LocalCluster:
    """Three cluster-enabled redis-servers joined into one cluster (all 16384 slots covered)."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.ports = [free_port() for _ in range(MASTERS)]
        server = require_binary("redis-server", "redis-server")
        self.cli = require_binary("redis-cli", "redis-tools")  # Debian's redis-server depends on it
        self.nodes = [self._node(server, port) for port in self.ports]

    def _node(self, binary: str, port: int) -> Process:
        node_dir = self.dir / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(node_dir),
                # the cluster bus on a free port of its own (the default, port + 10000, may be taken or > 65535)
                "--cluster-enabled", "yes", "--cluster-port", str(free_port()), "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "5000",
                "--save", "", "--appendonly", "no", "--daemonize", "no"]
        return Process(f"redis-server:{port}", argv, node_dir / "redis.log", "Ready to accept connections")

    @property
    def url(self) -> str:
        """REDIS_URL of the first node (REDIS_CLUSTER=true finds the rest from it)."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> None:
        """Start the servers, assign the slots, wait until every node sees the cluster ok."""
        for node in self.nodes:
            node.start()
        # each node logs this once it owns its slots and knows who serves the others
        ok = [node.expect("Cluster state changed: ok") for node in self.nodes]
        create = subprocess.run(
            [self.cli, "--cluster", "create", *(f"127.0.0.1:{port}" for port in self.ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, timeout=READY_TIMEOUT_S, check=False,
        )
        if create.returncode != 0:
            self.stop()
            raise RuntimeError(f"redis-cli --cluster create failed:\n{create.stdout}\n{create.stderr}")
        self._wait_ok(ok)

    def _wait_ok(self, ok: list[threading.Event]) -> None:
        """Wait for every node's "Cluster state changed: ok" line, then check each knows all masters."""
        if not all(event.wait(READY_TIMEOUT_S) for event in ok):
            self.stop()
            raise RuntimeError(f"the cluster did not reach cluster_state:ok in {READY_TIMEOUT_S}s")
        for port in self.ports:
            with redis.Redis(host="127.0.0.1", port=port) as client:
                info = client.cluster("INFO")  # redis-py parses it into a dict of str
            if info.get("cluster_state") != "ok" or int(info.get("cluster_known_nodes", 0)) != MASTERS:
                self.stop()
                raise RuntimeError(f"node {port} reports {info.get('cluster_state')} with "
                                   f"{info.get('cluster_known_nodes')} known nodes")

    def stop(self) -> None:
        """Kill every server (nothing is kept: --save '' and the directory is temporary)."""
        for node in self.nodes:
            node.kill()
