"""The production setup of deploy/ (README there) with real Patroni, etcd
and HAProxy from Debian, on loopback: deploy/try-locally.sh starts one etcd,
two Patroni nodes preloading resumable_ws in synchronous mode and HAProxy
with deploy/haproxy/haproxy.cfg, then a client writes through HAProxy while
`patronictl failover` moves the primary, resumes through HAProxy, and checks
that every acknowledged message is stored under its id and that each event
reached it once and in order (deploy/failover_client.py)."""
import os
import shutil
import subprocess

import pytest

DEPLOY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy")


@pytest.mark.skipif(not all(shutil.which(t) for t in ("patroni", "patronictl", "etcd", "haproxy", "curl")),
                    reason="needs Debian's patroni, etcd-server, haproxy and curl "
                           "(scripts/install-deps.sh --test installs them)")
@pytest.mark.skipif(os.environ.get("RWS_TEST_WORKERS", "1") != "1",
                    reason="runs once, in the one-worker pass: its nodes' settings are deploy/'s files, "
                           "not the harness's worker count")
def test_patronictl_failover_through_haproxy_loses_nothing_acknowledged():
    run = subprocess.Popen([os.path.join(DEPLOY, "try-locally.sh"), "--runs", "1"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = run.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        run.terminate()  # the script stops what it started
        try:
            output, _ = run.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            run.kill()
            output, _ = run.communicate()
        pytest.fail("try-locally.sh did not finish in 240 s:\n" + output)
    print(output)
    assert run.returncode == 0, output
    figures = [line for line in output.splitlines() if line.startswith("run 1")]
    assert len(figures) == 1 and figures[0].endswith("nothing lost, each event once and in order"), output
