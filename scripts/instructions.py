#!/usr/bin/env python3
"""The API server's instructions per pod over the scale benchmark's bursts, counted by valgrind's
callgrind: a figure that does not move with this VM's speed (wall-clock and CPU-time figures swing
by up to 30% within minutes here), so two builds can be compared to a percent. It counts
instructions, not time: a change that saves instructions can still cost time (cache misses, lock
waits), so confirm a gain with `scripts/bench.sh scale`.

usage: scripts/bench.sh instructions [--nodes 100] [--pods 2000] [--tugboat target/release/tugboat]
Prints, per burst (plain, then anti-affinity + spread), the server's instructions per pod from
the burst's start until its pods run. The server runs about 50 times slower under callgrind, so
keep the bursts small."""
import argparse, glob, os, subprocess, sys, tempfile, time

parser = argparse.ArgumentParser()
parser.add_argument("--nodes", default="100")
parser.add_argument("--pods", type=int, default=2000)
parser.add_argument("--tugboat", default="target/release/tugboat")
args = parser.parse_args()

work = tempfile.mkdtemp(prefix="tugboat-instructions-")
wrapper = os.path.join(work, "tugboat")
# callgrind_control finds the server by its program name, which must be `tugboat`: a build to
# compare, saved under another name, runs through a link with that name.
os.makedirs(os.path.join(work, "bin"))
real = os.path.join(work, "bin", "tugboat")
os.symlink(os.path.abspath(args.tugboat), real)
# The benchmark starts `tugboat server` and `tugboat sim`: only the server runs under callgrind.
with open(wrapper, "w") as f:
    f.write(f"""#!/usr/bin/env bash
if [ "$1" = server ]; then
  exec valgrind --tool=callgrind --callgrind-out-file={work}/out.%p "{real}" "$@" 2>{work}/valgrind.log
fi
exec "{real}" "$@"
""")
os.chmod(wrapper, 0o755)

def callgrind(flag):
    subprocess.run(["callgrind_control", flag, "tugboat"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work)

def dump_instructions():
    """Dumps the counts since the last zeroing and returns their total."""
    for old in glob.glob(f"{work}/out.*.*"):
        os.remove(old)
    callgrind("-d")
    for _ in range(100):
        dumps = glob.glob(f"{work}/out.*.*")
        if dumps:
            break
        time.sleep(0.1)
    time.sleep(0.5)
    total = 0
    for dump in dumps:
        for line in open(dump):
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
    return total

bench = subprocess.Popen(
    ["target/release/tugboat-bench-scale", "--tugboat", wrapper, "--nodes", args.nodes, "--pods", str(args.pods),
     "--paced-pods", "0", "--replicas", "0", "--total-pods", "0", "--phase-timeout", "1800"],
    stdout=subprocess.PIPE, text=True)
counting = False
phase = None
for line in bench.stdout:
    sys.stdout.write(line)
    sys.stdout.flush()
    if "sustained" in line:
        # "<N> nodes, <phase>  <bound>/<expected> bound ...": the phase whose pods now start.
        phase = None if " 0/0 " in line else line.split(",", 1)[1].split("  ")[0].strip()
    # A phase starts once the nodes are Ready or the previous phase's pods run, and ends when its
    # own pods run.
    if "pods Running," in line and counting and phase:
        print(f"  server instructions per pod, {phase}: {dump_instructions() / args.pods / 1e6:.3f} M", flush=True)
    if "Ready in" in line or "pods Running," in line:
        callgrind("-z")
        counting = True
sys.exit(bench.wait())
