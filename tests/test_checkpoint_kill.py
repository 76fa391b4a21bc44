"""Checkpoints survive SIGKILL at any moment, and training resumes from what is left, exactly.

A training process that writes large checkpoints (a ~40 MB file: a 3M-parameter model and Adam's two moments) after
every epoch of two batches is started and killed with SIGKILL at random moments, again and again. Most kills land
while a checkpoint is being written, since writing is most of what the process does. After each kill the test loads
the checkpoint that is left (it must be complete and valid), and the next process resumes from it. In the end one
more process resumes and finishes the run, and its weights must equal, bit for bit, those of a run that was never
interrupted. Run as a script, this file is the training process.
"""
import os
import random
import select
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))

from nntrain.checkpoint import TEMP_SUFFIX, CheckpointS, load_checkpoint  # noqa: E402
from nntrain.learner import Learner, Subscriber  # noqa: E402

N_KILLS = 20          # SIGKILLs to deliver
KILL_BUDGET_S = 90    # stop killing after this long, whatever the count (a busy machine is slow to start Pythons)
MIN_KILLS = 10        # fewer than this within the budget fails the test
FOREVER = 10**6       # epochs asked of the processes that get killed: they never finish on their own


# ---------------------------------------------------------------- the training process
class ShuffledBatches:
    "Batches of (x, y), reshuffled every epoch with torch's global generator, like nntrain's in-memory loaders."
    def __init__(self, x, y, bs): self.x, self.y, self.bs = x, y, bs
    def __len__(self): return -(-len(self.x) // self.bs)
    def __iter__(self):
        idx = torch.randperm(len(self.x))
        for i in range(0, len(idx), self.bs): yield [self.x[idx[i:i + self.bs]], self.y[idx[i:i + self.bs]]]

class Dls:
    def __init__(self, train, valid): self.train, self.valid = train, valid

class Announce(Subscriber):
    "Tells the parent which epoch the fit starts at (after resuming), then when each epoch is saved."
    order = 100
    def before_fit(self, learn): print(f'START {learn.epochs.start}', flush=True)
    def after_epoch(self, learn):
        if not learn.training: print(f'SAVED {learn.epoch}', flush=True)

def make_learner(folder):
    from nntrain.acceleration import SchedulerS
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 1024, generator=g), torch.randint(0, 10, (64,), generator=g)
    dls = Dls(ShuffledBatches(x, y, 32), [[x[:32], y[:32]]])
    model = torch.nn.Sequential(torch.nn.Linear(1024, 3072), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(3072, 10))
    subs = [SchedulerS(partial(torch.optim.lr_scheduler.ExponentialLR, gamma=0.99))]
    if folder is not None: subs.append(CheckpointS(folder))
    return Learner(model, dls, torch.nn.functional.cross_entropy, torch.optim.Adam, 1e-4, subs + [Announce()])

def train(folder, n_epochs, out=None):
    "Train to `n_epochs` in total, resuming from `folder`/last.pt if there is one; save the final weights to `out`."
    torch.set_num_threads(1)  # the same arithmetic in every process
    torch.manual_seed(1)
    folder = None if folder == '-' else Path(folder)
    learn = make_learner(folder)
    last = folder / 'last.pt' if folder is not None else None
    learn.fit(n_epochs, resume_from=last if last is not None and last.exists() else None)
    if out: torch.save(learn.model.state_dict(), out)


# ---------------------------------------------------------------- the test
def start(*args):
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')])}
    return subprocess.Popen([sys.executable, __file__, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)

def read_line(proc, timeout=120):
    "The next line the process prints, or fail with its stderr if it dies or stays silent."
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ''
    if not line:
        proc.kill()
        pytest.fail(f"training process printed nothing (exit code {proc.wait()}): {proc.stderr.read()[-3000:]}")
    return line.split()

@pytest.mark.skipif(not hasattr(signal, 'SIGKILL'), reason='needs SIGKILL (POSIX)')
def test_sigkill_at_random_moments_leaves_a_usable_checkpoint(tmp_path):
    rng = random.Random(0)
    folder = tmp_path / 'run'
    last_epoch, kills, mid_write, t0 = -1, 0, 0, time.monotonic()
    # N_KILLS kills, and more (up to twice as many) until at least one has landed in the middle of a write
    while (kills < N_KILLS or not mid_write) and kills < 2 * N_KILLS and time.monotonic() - t0 < KILL_BUDGET_S:
        proc = start(folder, FOREVER)
        word, epoch = read_line(proc)
        assert (word, int(epoch)) == ('START', last_epoch + 1), 'the process must resume right after the checkpoint left'
        time.sleep(rng.uniform(0.0, 0.8))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close(); proc.stderr.close()
        kills += 1
        mid_write += any(folder.glob(f'.*{TEMP_SUFFIX}'))  # a temporary file: killed while writing
        if (folder / 'last.pt').exists():
            ckpt = load_checkpoint(folder / 'last.pt')  # complete and valid, or this raises
            assert ckpt['epoch'] >= last_epoch
            last_epoch = ckpt['epoch']
    elapsed = time.monotonic() - t0
    print(f'{kills} kills in {elapsed:.0f}s, {mid_write} of them while a checkpoint was being written; '
          f'the last checkpoint is of epoch {last_epoch}')
    assert kills >= MIN_KILLS, f'only {kills} kills in {KILL_BUDGET_S}s'
    assert last_epoch >= 1, 'training never got far enough to write two checkpoints'
    assert mid_write >= 1, 'no kill landed during a write: the test did not test atomicity'

    # resume once more and finish; compare with a run that was never interrupted
    n_epochs = last_epoch + 3
    finish, reference = start(folder, n_epochs, tmp_path / 'resumed.pt'), start('-', n_epochs, tmp_path / 'reference.pt')
    outs = []
    for proc in (finish, reference):
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        outs.append(out.split('\n'))
    assert outs[0][0] == f'START {last_epoch + 1}' and outs[1][0] == 'START 0'
    assert len(list(folder.glob(f'.*{TEMP_SUFFIX}'))) == 0, 'stale temporary files are cleared by the next run'
    resumed, ref = torch.load(tmp_path / 'resumed.pt'), torch.load(tmp_path / 'reference.pt')
    for k in ref: assert torch.equal(resumed[k], ref[k]), f'{k} differs from the uninterrupted run'


if __name__ == '__main__':
    train(sys.argv[1], int(sys.argv[2]), *sys.argv[3:])
