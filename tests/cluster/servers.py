"""A local Redis Cluster of three masters for the tests: three `redis-server --cluster-enabled yes`
on free ports in a temporary directory, joined by `redis-cli --cluster create`, no replicas, no
persistence. Started once per test session (tests/conftest.py `redis_cluster`), killed at the end.

Each server is a child process whose readiness is its own "Ready to accept connections" line
(tests/faults/servers.py); the cluster is ready when every node reports `cluster_state:ok` and
knows all three masters.
"""

from __future__ import annotations

import subprocess
import time
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
        create = subprocess.run(
            [self.cli, "--cluster", "create", *(f"127.0.0.1:{port}" for port in self.ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, timeout=READY_TIMEOUT_S, check=False,
        )
        if create.returncode != 0:
            self.stop()
            raise RuntimeError(f"redis-cli --cluster create failed:\n{create.stdout}\n{create.stderr}")
        self._wait_ok()

    def _wait_ok(self) -> None:
        """Poll CLUSTER INFO until every node says ok with all masters known (gossip takes a moment)."""
        clients = [redis.Redis(host="127.0.0.1", port=port) for port in self.ports]
        deadline = time.monotonic() + READY_TIMEOUT_S
        try:
            while not all(self._ok(client) for client in clients):
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"the cluster did not reach cluster_state:ok in {READY_TIMEOUT_S}s")
                time.sleep(0.05)  # polling the servers' own state, not waiting out a guess
        finally:
            for client in clients:
                client.close()

    @staticmethod
    def _ok(client: redis.Redis) -> bool:
        info = client.cluster("INFO")  # redis-py parses it into a dict of str
        return info.get("cluster_state") == "ok" and int(info.get("cluster_known_nodes", 0)) == MASTERS

    def stop(self) -> None:
        """Kill every server (nothing is kept: --save '' and the directory is temporary)."""
        for node in self.nodes:
            node.kill()
