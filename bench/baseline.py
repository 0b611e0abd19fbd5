"""Side-by-side runs for the benchmarks: `--baseline REF` builds REF (a
commit, e.g. HEAD~3) in a temporary git worktree, and the benchmark then runs
against REF and this tree in turn, installing each before its run (`make
install` into the PostgreSQL that `pg_config` names), `--rounds N` times (the
builds alternate, so a machine that gets busier or quieter affects both). This
tree is installed again at the end."""
import os
import subprocess
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def install(tree):
    for args in (["make", "-s", f"-j{os.cpu_count()}"], ["make", "-s", "install"]):
        subprocess.run(args, cwd=tree, check=True, stdout=subprocess.DEVNULL)


def take_option(args, name, default=None):
    """Removes `name VALUE` from args and returns VALUE (or default)."""
    if name not in args:
        return default
    i = args.index(name)
    value = args[i + 1]
    del args[i:i + 2]
    return value


def side_by_side(args, measure):
    """Calls measure(label) for this tree, or with --baseline REF for REF and
    this tree in turn, --rounds times. args loses the two options."""
    baseline = take_option(args, "--baseline")
    rounds = int(take_option(args, "--rounds", "1"))
    if not baseline:
        for _ in range(rounds):
            measure("this tree")
        return
    worktree = tempfile.mkdtemp(prefix="rws-baseline-")
    subprocess.run(["git", "worktree", "add", "-q", "--detach", worktree, baseline], cwd=ROOT, check=True)
    try:
        subprocess.run(["make", "-s", f"-j{os.cpu_count()}"], cwd=worktree, check=True, stdout=subprocess.DEVNULL)
        for round_number in range(1, rounds + 1):
            for label, tree in ((f"baseline {baseline}", worktree), ("this tree", ROOT)):
                install(tree)
                measure(f"{label} (round {round_number} of {rounds})")
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", worktree], cwd=ROOT, check=False)
        install(ROOT)
