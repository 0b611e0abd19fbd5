"""Installing: the library must be preloaded, and the worker starts serving
as soon as the extension is created."""
import psycopg2
import pytest

from harness import Cluster


def test_without_preload_create_extension_fails_clearly():
    cluster = Cluster(shared_preload_libraries="''")
    try:
        cluster._pg(["pg_ctl", "-D", cluster.data, "-l", cluster.logfile, "-w", "start"])
        with pytest.raises(psycopg2.Error) as error:
            cluster.sql("CREATE EXTENSION resumable_ws")
        assert "shared_preload_libraries" in str(error.value)
    finally:
        cluster.destroy()


def test_worker_waits_for_the_extension_then_serves():
    cluster = Cluster()
    try:
        cluster._pg(["pg_ctl", "-D", cluster.data, "-l", cluster.logfile, "-w", "start"])
        cluster.wait_for(lambda: "waiting for CREATE EXTENSION" in cluster.log(), what="the worker")
        with pytest.raises(OSError):
            cluster.http("/healthz")  # nothing listens before the extension exists
        health = cluster.wait_healthy()  # creates it
        assert health["database"] is True
    finally:
        cluster.destroy()
