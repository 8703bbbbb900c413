"""Which gunicorn worker holds a given TCP connection (Linux /proc), so a test can send one request to one worker
and the next to another: keep-alive connections stay with the worker that accepted them."""
from __future__ import annotations

import http.client
import os
import time
from pathlib import Path


def worker_pids(master_pid: int) -> set[int]:
    """The live children of the gunicorn master."""
    children = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # the command name may hold spaces, so the fields are read after its closing parenthesis
            if int(stat.rpartition(")")[2].split()[1]) == master_pid:
                children.add(int(entry.name))
    return children


def _server_side_inode(server_port: int, client_port: int) -> str | None:
    """The inode of the server's end of the loopback connection from client_port to server_port."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == client_port:
            return inode
    return None


def worker_of(connection: http.client.HTTPConnection, master_pid: int, server_port: int) -> int | None:
    """The pid of the worker that owns this (already used) keep-alive connection, or None if none is found."""
    inode = _server_side_inode(server_port, connection.sock.getsockname()[1])
    if inode is None:
        return None
    for pid in worker_pids(master_pid):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    return None


def connections_on_two_workers(host: str, port: int, master_pid: int, tries: int = 60
                               ) -> tuple[http.client.HTTPConnection, http.client.HTTPConnection]:
    """Two keep-alive connections that are held by two different workers; the others opened are closed.

    Raises AssertionError if every connection landed on the same worker."""
    by_worker: dict[int, http.client.HTTPConnection] = {}
    opened = []
    for attempt in range(tries):
        connection = http.client.HTTPConnection(host, port, timeout=30)
        connection.request("GET", "/healthz")
        connection.getresponse().read()
        opened.append(connection)
        pid = worker_of(connection, master_pid, port)
        if pid is not None and pid not in by_worker:
            by_worker[pid] = connection
        if len(by_worker) == 2:
            break
        # a worker still warming up (post_worker_init) is not accepting yet: give it a moment, not a burst
        time.sleep(min(0.02 * (attempt + 1), 0.2))
    keep = list(by_worker.values()) if len(by_worker) == 2 else []
    for connection in opened:
        if connection not in keep:
            connection.close()  # on failure too: an unclosed socket would warn in whichever test runs next
    assert len(keep) == 2, f"all {len(opened)} connections landed on one worker"
    return keep[0], keep[1]
