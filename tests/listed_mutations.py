"""The mutations the hardening issue listed, each applied alone to a copy of the repository,
with the fast tests that must catch it: prints KILLED or SURVIVED per mutation.

    .venv/bin/python tests/listed_mutations.py [NAME-FRAGMENT ...]
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SRC = Path(__file__).resolve().parents[1]
QL, RUNNER = "agents/qlearning.py", "toolkit/runner.py"
TERMINAL = "            if terminated:\n                target = float(reward)"
DECAY = "                if per_episode:\n                    self._decay()"
PER_STEP = '        per_step = cfg.decay_every == "step" and not linear'
PER_EPISODE = '        per_episode = cfg.decay_every == "episode" and not linear'
FLUSH = "        logger.flush()\n        state.metric_lines"
PURGE = "        purge = None if resume_step is None else resume_step + 1"
#: (name, file, text, its mutation, the tests that must catch it)
MUTS = [
    ("bootstrap on terminated", QL, TERMINAL, TERMINAL.replace("terminated", "False"),
     "tests/test_qlearning.py"),
    ("truncation as termination", QL, TERMINAL,
     TERMINAL.replace("terminated", "terminated or truncated"), "tests/test_qlearning.py"),
    ("per-episode decay off by one", QL, DECAY,
     DECAY + "\n                    if self.episodes == 1: self._decay()",
     "tests/test_qlearning.py"),
    ("decay_every ignored", QL, PER_STEP, "        per_step = False",
     "tests/test_qlearning.py"),
    ("decay_every ignored (always per step)", QL, PER_EPISODE,
     "        per_episode = False\n        per_step = not linear", "tests/test_qlearning.py"),
    ("global RNG not restored", RUNNER, '            set_global_rng_state(checkpoint["rng"])\n',
     "", "tests/test_runner.py"),
    ("no flush before checkpoint", RUNNER, FLUSH, "        state.metric_lines",
     "tests/test_runner.py"),
    ("purge_step dropped", "toolkit/logger.py", PURGE, "        purge = None",
     "tests/test_runner.py"),
    ("eval --checkpoint best loads last", "toolkit/cli.py",
     "load_checkpoint(rundir.checkpoint(checkpoint),",
     'load_checkpoint(rundir.checkpoint("last"),', "tests/test_hard_kill.py"),
]


def main() -> None:
    only = sys.argv[1:]
    ignore = shutil.ignore_patterns(".venv", ".git", "runs", "build", "__pycache__", "mutants")
    for name, file, old, new, tests in MUTS:
        if only and not any(o in name for o in only):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp) / "repo"
            shutil.copytree(SRC, work, ignore=ignore)
            text = (work / file).read_text()
            assert text.count(old) == 1, (name, text.count(old))
            (work / file).write_text(text.replace(old, new))
            done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p",
                                   "no:cacheprovider", tests], cwd=work, capture_output=True,
                                  text=True, env={**os.environ, "PYTHONPATH": str(work)})
        failed = [line for line in done.stdout.splitlines() if line.startswith("FAILED")]
        verdict = "KILLED  " if done.returncode else "SURVIVED"
        print(f"{verdict} {name}: {failed[:1]}", flush=True)


if __name__ == "__main__":
    main()
