"""Throwaway redis-server / Redis Cluster / PostgreSQL instances for the test-suite.

Every server listens on 127.0.0.1 on a free port (never the shared 6379 / 5432 services)
and lives in its own temp dir; ``close()`` / the context manager tears it down and an
``atexit`` hook kills whatever a crashed test left behind.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import ctypes
import functools
import glob
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn, Self

import asyncpg
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

HOST = "127.0.0.1"
_LIVE: dict[int, Callable[[], None]] = {}  # id(server) -> teardown, for the atexit fallback
_HANDED_OUT: set[int] = set()


class ServerUnavailable(RuntimeError):
    """A server binary is missing or the server failed to start."""


@atexit.register
def _kill_leftovers() -> None:
    for teardown in list(_LIVE.values()):
        with contextlib.suppress(OSError, subprocess.SubprocessError, ServerUnavailable):
            teardown()


def unavailable(reason: str) -> NoReturn:
    """Skip the calling test - or fail it in CI (``CI=true`` / ``CI=1``)."""
    if os.environ.get("CI", "").strip().lower() in {"true", "1"}:
        pytest.fail(reason)
    pytest.skip(reason)


def require(binary: str) -> str:
    """Absolute path of ``binary`` on PATH, else ServerUnavailable."""
    if (path := shutil.which(binary)) is None:
        raise ServerUnavailable(f"binary {binary!r} not found on PATH")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def free_cluster_port() -> int:
    """A port p with p and p+10000 (cluster bus) free; both below the ephemeral range."""
    for _ in range(500):
        port = random.randrange(10000, 20000)
        if port not in _HANDED_OUT and _bindable(port) and _bindable(port + 10000):
            _HANDED_OUT.add(port)
            return port
    raise ServerUnavailable("no free port pair (p, p+10000) for a Redis Cluster node")


def _tail(*paths: str, lines: int = 30) -> str:
    out: list[str] = []
    for path in paths:
        with contextlib.suppress(OSError), open(path, errors="replace") as f:
            out += f.read().splitlines()[-lines:]
    return "\n".join(out) or "(empty log)"


def _wait_for(check: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()


def _probe_client(port: int) -> redis.Redis:
    """Fail-fast client for readiness probes (redis-py retries 10x by default)."""
    return redis.Redis(
        host=HOST,
        port=port,
        socket_timeout=1,
        socket_connect_timeout=1,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


def _run_async(make_coro: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """asyncio.run in a worker thread, so it also works inside a running event loop."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make_coro())).result()


class _Managed:
    """Registers for the atexit fallback; context manager = start() ... close()."""

    def __init__(self) -> None:
        _LIVE[id(self)] = self.close

    def start(self) -> Self:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()


class RedisServer(_Managed):
    def __init__(
        self,
        port: int | None = None,
        *,
        appendonly: bool = False,
        extra_args: list[str] | None = None,
    ) -> None:
        self._auto_port, self._port = port is None, port or free_port()
        self.appendonly, self.extra_args = appendonly, list(extra_args or [])
        self.dir = tempfile.mkdtemp(prefix="earmark-redis-")
        self.logfile = os.path.join(self.dir, "redis.log")
        self._proc: subprocess.Popen[bytes] | None = None
        super().__init__()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self._port}/0"

    def _ping(self) -> bool:
        client = _probe_client(self._port)
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def _up_or_exited(self, proc: subprocess.Popen[bytes]) -> bool:
        return proc.poll() is not None or self._ping()

    def start(self, timeout: float = 10.0) -> Self:
        if self._proc is not None and self._proc.poll() is None:
            return self
        binary, stdout = require("redis-server"), os.path.join(self.dir, "stdout.log")
        for attempt in range(3 if self._auto_port else 1):
            args = [binary, "--port", str(self._port), "--bind", HOST, "--daemonize", "no"]
            args += ["--save", "", "--appendonly", "yes" if self.appendonly else "no"]
            args += ["--appendfsync", "everysec"] if self.appendonly else []
            args += ["--dir", self.dir, "--logfile", self.logfile, *self.extra_args]
            with open(stdout, "ab") as out:
                self._proc = proc = subprocess.Popen(
                    args, stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=self.dir
                )
            up = _wait_for(functools.partial(self._up_or_exited, proc), timeout)
            if up and proc.poll() is None:
                self._auto_port = False  # restart() must reuse this port
                return self
            self.kill()
            log = _tail(self.logfile, stdout)
            if attempt < 2 and self._auto_port and "already in use" in log:
                self._port = free_port()  # lost a race for the port: try another one
                continue
            raise ServerUnavailable(f"redis-server on port {self._port} did not start:\n{log}")
        raise AssertionError("unreachable")

    def _signal(self, sig: signal.Signals) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def kill(self) -> None:
        """SIGKILL + wait: a crash (no AOF flush on shutdown)."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM + wait: graceful shutdown; SIGKILL if it takes more than 10s."""
        self._signal(signal.SIGTERM)

    def restart(self, timeout: float = 10.0) -> Self:
        """(Stop if still running, then) start again on the same port and dir."""
        self.stop()
        return self.start(timeout)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        _LIVE.pop(id(self), None)


class RedisCluster(_Managed):
    NODE_ARGS = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")

    def __init__(self, masters: int = 3) -> None:
        self.masters = masters
        self.nodes: list[RedisServer] = []
        super().__init__()

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [(HOST, port) for port in self.ports]

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.ports[0]}"

    def start(self, timeout: float = 20.0) -> Self:
        try:
            cli, _ = require("redis-cli"), require("redis-server")
            while len(self.nodes) < self.masters:
                extra = [*self.NODE_ARGS, "--cluster-node-timeout", "5000"]
                self.nodes.append(RedisServer(free_cluster_port(), extra_args=extra))
                self.nodes[-1].start()
            cmd = [cli, "--cluster", "create", *(f"{HOST}:{p}" for p in self.ports)]
            cmd += ["--cluster-replicas", "0", "--cluster-yes"]
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
            if res.returncode != 0:
                raise ServerUnavailable(
                    f"redis-cli --cluster create failed:\n{res.stdout}{res.stderr}"
                )
            if not _wait_for(self._healthy, timeout, interval=0.1):
                info = "\n".join(f"{p}: {self._info(p)}" for p in self.ports)
                raise ServerUnavailable(f"cluster not ok after {timeout}s:\n{info}")
        except subprocess.TimeoutExpired as e:
            self.close()
            raise ServerUnavailable(f"redis-cli --cluster create timed out: {e.stdout!r}") from e
        except BaseException:
            self.close()  # never leave half a cluster running
            raise
        return self

    @staticmethod
    def _info(port: int) -> dict[str, str]:
        client = _probe_client(port)
        try:
            raw: Any = client.cluster("INFO")
        except (redis.RedisError, OSError):
            return {}
        finally:
            client.close()
        if isinstance(raw, dict):
            return {str(k): str(v) for k, v in raw.items()}
        pairs = (line.split(":", 1) for line in str(raw).splitlines() if ":" in line)
        return {k.strip(): v.strip() for k, v in pairs}

    def _healthy(self) -> bool:
        infos = [self._info(port) for port in self.ports]
        ok = {"cluster_state": "ok", "cluster_slots_assigned": "16384"}
        return all(info.get(k) == v for info in infos for k, v in ok.items())

    def close(self) -> None:
        for node in self.nodes:
            node.kill()
            node.close()
        self.nodes.clear()
        _LIVE.pop(id(self), None)


def _proc_stat(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name; [] if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _alive(pid: int) -> bool:
    return _proc_stat(pid)[:1] not in ([], ["Z"])  # zombies count as dead


def _children(ppid: int) -> set[int]:
    pids = (int(p) for p in os.listdir("/proc") if p.isdigit())
    return {pid for pid in pids if _proc_stat(pid)[1:2] == [str(ppid)]}


def _reap(pids: set[int]) -> None:
    """Collect zombies re-parented to us (we are a child subreaper, see PostgresServer)."""
    _wait_for(lambda: not any(map(_alive, pids)), 10)
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def _pg_bindir() -> str:
    def version(path: str) -> tuple[int, ...]:
        return tuple(int(x) for x in path.split("/")[-2].split(".") if x.isdigit())

    for path in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if all(os.access(os.path.join(path, b), os.X_OK) for b in ("initdb", "pg_ctl", "postgres")):
            return path
    if (pg_ctl := shutil.which("pg_ctl")) is None or shutil.which("initdb") is None:
        raise ServerUnavailable("PostgreSQL binaries (initdb / pg_ctl / postgres) not found")
    return os.path.dirname(os.path.realpath(pg_ctl))


class PostgresServer(_Managed):
    def __init__(self, port: int | None = None) -> None:
        self._auto_port, self._port = port is None, port or free_port()
        self.base: str | None = None  # holds data/, postgres.log and the unix socket
        super().__init__()

    @property
    def port(self) -> int:
        return self._port

    @property
    def dsn(self) -> str:
        return self.dsn_for("postgres")

    def dsn_for(self, database: str) -> str:
        return f"postgresql://postgres@{HOST}:{self._port}/{database}"

    def _path(self, name: str) -> str:
        if self.base is None:
            raise RuntimeError("PostgresServer was never started")
        return os.path.join(self.base, name)

    def _run(self, tool: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        cmd = [os.path.join(_pg_bindir(), tool), *args]
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            cmd = [require("runuser"), "-u", "postgres", "--", *cmd]
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd=self.base
        )

    def _initdb(self) -> None:
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError as e:
                raise ServerUnavailable("running as root but there is no 'postgres' user") from e
            self.base = tempfile.mkdtemp(prefix="earmark-pg-", dir="/tmp")  # world-traversable
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
        else:
            self.base = tempfile.mkdtemp(prefix="earmark-pg-")
        # pg_ctl orphans the postmaster; adopt it (and its children) so that we can reap them
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
        args = ["-D", self._path("data"), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
        args += ["--locale=C", "--no-sync"]
        if "--no-instructions" in self._run("initdb", "--help").stdout:
            args.append("--no-instructions")
        if (res := self._run("initdb", *args)).returncode != 0:
            raise ServerUnavailable(f"initdb failed:\n{res.stdout}{res.stderr}")

    def _accepts_connections(self) -> bool:
        async def probe() -> bool:
            conn = await asyncpg.connect(self.dsn, timeout=2)
            try:
                return bool(await conn.fetchval("select 1") == 1)
            finally:
                await conn.close()

        try:
            return bool(_run_async(probe))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            return False

    def start(self, timeout: float = 60.0) -> Self:
        """initdb on first use, then ``pg_ctl start -w`` (crash recovery after kill())."""
        if self.base is None:
            self._initdb()
        elif self._postmaster_pid() is not None:
            return self
        for attempt in range(3 if self._auto_port else 1):
            opts = f"-p {self._port} -k {self.base} -c listen_addresses={HOST} -c fsync=off"
            opts += " -c synchronous_commit=off -c full_page_writes=off"
            args = ["-D", self._path("data"), "-l", self._path("postgres.log"), "-w"]
            res = self._run("pg_ctl", *args, "-t", str(int(timeout)), "-o", opts, "start")
            if res.returncode == 0 and _wait_for(self._accepts_connections, 10, interval=0.1):
                self._auto_port = False  # later start()s must reuse this port
                return self
            self.kill()
            log = _tail(self._path("postgres.log"))
            if attempt < 2 and self._auto_port and "already in use" in log:
                self._port = free_port()
                continue
            raise ServerUnavailable(f"postgres did not start:\n{res.stdout}{res.stderr}{log}")
        raise AssertionError("unreachable")

    def create_database(self, name: str) -> str:
        """CREATE DATABASE ``name`` unless it exists; returns its dsn."""

        async def create() -> None:
            conn = await asyncpg.connect(self.dsn, timeout=10)
            try:
                if not await conn.fetchval("select 1 from pg_database where datname=$1", name):
                    await conn.execute('CREATE DATABASE "{}"'.format(name.replace('"', '""')))
            finally:
                await conn.close()

        _run_async(create)
        return self.dsn_for(name)

    def _postmaster_pid(self) -> int | None:
        """PID from data/postmaster.pid if that process is alive (not a zombie)."""
        if self.base is None:
            return None
        with contextlib.suppress(OSError, ValueError), open(self._path("data/postmaster.pid")) as f:
            pid = int(f.readline())
            return pid if _alive(pid) else None
        return None

    def stop(self) -> None:
        """``pg_ctl stop -m fast``; SIGKILL if that fails."""
        if (pid := self._postmaster_pid()) is not None:
            res = self._run("pg_ctl", "-D", self._path("data"), "-m", "fast", "-w", "stop")
            if res.returncode == 0:
                _reap({pid})
            else:
                self.kill()

    def kill(self) -> None:
        """SIGKILL the postmaster and its children (a crash); wait until the port is closed."""
        if (pid := self._postmaster_pid()) is None:
            return
        pids = {pid, *_children(pid)}
        for member in pids:
            with contextlib.suppress(OSError):
                os.kill(member, signal.SIGKILL)
        if not _wait_for(lambda: not any(map(_alive, pids)), 15):
            raise ServerUnavailable(f"postgres (pid {pid}) survived SIGKILL")
        if not _wait_for(lambda: not _listening(self._port), 15):
            raise ServerUnavailable(f"port {self._port} still open after killing postgres")
        _reap(pids)
        # An unreaped (zombie) postmaster would block the next start: drop the stale lock
        # files and the SysV shm segment. Crash recovery is driven by pg_control anyway.
        lockfiles = [self._path("data/postmaster.pid"), self._path(f".s.PGSQL.{self._port}.lock")]
        with contextlib.suppress(OSError, IndexError), open(lockfiles[0]) as f:
            shmid = f.read().splitlines()[6].split()[1]
            if ipcrm := shutil.which("ipcrm"):
                subprocess.run([ipcrm, "-m", shmid], capture_output=True, check=False)
        for path in lockfiles:
            with contextlib.suppress(OSError):
                os.unlink(path)

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self.kill()
            if self.base is not None:
                shutil.rmtree(self.base, ignore_errors=True)
            _LIVE.pop(id(self), None)


class TcpProxy:
    """A loopback TCP forwarder the test can freeze: while frozen it stops moving bytes
    (both ways), as a replication link does when the network between a primary and its
    replica stalls; the connections stay open. Threads, one pair per connection."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((HOST, 0))
        self._listener.listen(16)
        self.port = int(self._listener.getsockname()[1])
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((HOST, self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while not self._closed.is_set():
                self._flowing.wait()
                data = source.recv(65536)
                if not data:
                    break
                self._flowing.wait()  # frozen mid-chunk: hold it until resumed
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed.set()
        self._flowing.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        for s in self._sockets:
            with contextlib.suppress(OSError):
                s.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def replica_in_sync(replica: RedisServer, timeout: float = 15.0) -> None:
    """Waits until ``replica`` has finished its sync with its primary."""

    def synced() -> bool:
        client = _probe_client(replica.port)
        try:
            info = client.info("replication")
            return bool(
                info.get("master_link_status") == "up" and not info.get("master_sync_in_progress")
            )
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    if not _wait_for(synced, timeout):
        raise ServerUnavailable(
            f"replica on {replica.port} did not sync:\n{_tail(replica.logfile)}"
        )


class RedisSentinel(_Managed):
    """One redis-sentinel (redis-server --sentinel) watching ``service`` on a primary."""

    def __init__(self, primary_port: int, service: str, *, quorum: int = 2) -> None:
        self.port = free_port()
        self.service, self.primary_port, self.quorum = service, primary_port, quorum
        self.dir = tempfile.mkdtemp(prefix="earmark-sentinel-")
        self.logfile = os.path.join(self.dir, "sentinel.log")
        self._proc: subprocess.Popen[bytes] | None = None
        super().__init__()

    def start(self, timeout: float = 10.0) -> Self:
        config = os.path.join(self.dir, "sentinel.conf")
        with open(config, "w") as f:
            f.write(
                f"port {self.port}\nbind {HOST}\ndaemonize no\ndir {self.dir}\n"
                f"logfile {self.logfile}\n"
                f"sentinel monitor {self.service} {HOST} {self.primary_port} {self.quorum}\n"
                f"sentinel down-after-milliseconds {self.service} 1000\n"
                f"sentinel failover-timeout {self.service} 5000\n"
                f"sentinel parallel-syncs {self.service} 1\n"
            )
        binary = require("redis-server")
        self._proc = subprocess.Popen(
            [binary, config, "--sentinel"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.dir,
        )

        def up() -> bool:
            client = _probe_client(self.port)
            try:
                return bool(client.ping())
            except (redis.RedisError, OSError):
                return False
            finally:
                client.close()

        if not _wait_for(up, timeout):
            self.close()
            raise ServerUnavailable(f"redis-sentinel did not start:\n{_tail(self.logfile)}")
        return self

    def primary(self) -> tuple[str, int] | None:
        client = _probe_client(self.port)
        try:
            found = client.execute_command("SENTINEL", "get-master-addr-by-name", self.service)
        except (redis.RedisError, OSError):
            return None
        finally:
            client.close()
        return (str(found[0]), int(found[1])) if found else None

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
        _LIVE.pop(id(self), None)
