"The `nntrain` console command, run as a user runs it: in a subprocess, offline."
import gzip, json, os, shutil, signal, subprocess, sys, time
from contextlib import contextmanager
from pathlib import Path

import pytest

import nntrain

SAMPLE = Path(nntrain.__file__).parent / 'data' / 'fashion_mnist_sample'

@pytest.fixture(scope='module')
def small_idx(tmp_path_factory):
    "A small Fashion-MNIST idx folder (1,000 train / 300 test images cut from the bundled sample): quick to train on."
    from nntrain.dataloaders import read_idx, write_idx
    out = tmp_path_factory.mktemp('small_idx')
    for kind, n in (('train', 1000), ('t10k', 300)):
        for part in ('images-idx3', 'labels-idx1'):
            name = f'{kind}-{part}-ubyte.gz'
            write_idx(out / name, read_idx(SAMPLE / name)[::len(read_idx(SAMPLE / name)) // n][:n])
    return out

CLI_ENV = {**os.environ, 'HF_HUB_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1', 'MPLBACKEND': 'Agg'}

def cli_command(*args): return [sys.executable, '-c', 'import sys; from nntrain.cli import main; sys.exit(main())', *args]

def run_cli(*args, cwd=None):
    return subprocess.run(cli_command(*args), capture_output=True, text=True, env=CLI_ENV, cwd=cwd, timeout=600)

def test_console_script_is_installed():
    exe = shutil.which('nntrain', path=str(Path(sys.executable).parent))
    assert exe, 'the nntrain console script is not installed next to this python'
    r = subprocess.run([exe, 'train', '--help'], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and '--metrics-json' in r.stdout and '--data' in r.stdout

def test_train_offline_uses_the_bundled_sample(tmp_path):
    out = tmp_path / 'm.json'
    r = run_cli('train', '--epochs', '1', '--bs', '256', '--metrics-json', str(out))  # 39 steps: enough to learn something
    assert r.returncode == 0, r.stderr
    assert 'bundled sample' in r.stdout
    assert 'valid accuracy' in r.stdout
    m = json.loads(out.read_text())
    assert m['epochs'] == 1 and m['wall_seconds'] > 0
    assert 0.6 < m['valid']['accuracy'] <= 1 and m['valid']['loss'] > 0

def test_train_on_local_idx_files(small_idx):
    r = run_cli('train', '--epochs', '1', '--data', str(small_idx))
    assert r.returncode == 0, r.stderr
    assert f'idx files in {small_idx}' in r.stdout

def test_checkpoint_folder_gets_checkpoints_plan_and_curves(tmp_path, small_idx):
    ck = tmp_path / 'ck'
    r = run_cli('train', '--data', str(small_idx), '--epochs', '1', '--no-augment', '--checkpoint', str(ck))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in ck.iterdir()) == ['best.pt', 'last.pt', 'run.json', 'training_curves.png']
    assert json.loads((ck / 'run.json').read_text())['augment'] is False
    r = run_cli('train', '--resume', '--epochs', '2', '--checkpoint', str(ck))
    assert r.returncode == 2 and 'epochs=2 (the run has 1)' in r.stderr

def test_resume_needs_a_checkpoint_folder():
    r = run_cli('train', '--resume')
    assert r.returncode == 2 and '--resume needs --checkpoint DIR' in r.stderr

def test_missing_data_path_is_a_clear_error(tmp_path):
    r = run_cli('train', '--data', str(tmp_path / 'nowhere'))
    assert r.returncode == 2
    assert 'no such file or folder' in r.stderr and 'Traceback' not in r.stderr

def test_malformed_data_is_a_clear_error(tmp_path):
    data = tmp_path / 'bad'
    data.mkdir()
    for name in ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz', 't10k-images-idx3-ubyte.gz',
                 't10k-labels-idx1-ubyte.gz'):
        with gzip.open(data / name, 'wb') as f: f.write(b'this is not an idx file')
    r = run_cli('train', '--data', str(data))
    assert r.returncode == 2, r.stdout + r.stderr
    assert 'nntrain: error:' in r.stderr and 'Traceback' not in r.stderr

@pytest.mark.parametrize('args', [['train', '--epochs', '0'], ['train', '--lr', '-1'], ['train', '--bs', 'x'],
                                  ['train', '--lr', 'inf'], ['train', '--lr', 'nan'], ['train', '--seed', str(2**64)],
                                  ['train', '--bs', '1']])
def test_bad_arguments_are_refused(args):
    r = run_cli(*args)
    assert r.returncode == 2 and f'argument {args[1]}:' in r.stderr and 'Traceback' not in r.stderr
    assert 'data:' not in r.stdout  # by the parser, before any data is loaded

@contextmanager
def running_until(args, path):
    "Start `nntrain *args`, wait until it has written `path`, and give the process; it is SIGKILLed at the end, nothing of its own code running after."
    p = subprocess.Popen(cli_command(*args), env=CLI_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not path.exists():
            assert p.poll() is None and time.monotonic() < deadline, f'the run ended before it wrote {path.name}'
            time.sleep(0.005)
        yield p
    finally:
        p.kill()
        p.wait()

def test_a_run_killed_before_its_first_checkpoint_can_be_started_again(tmp_path, small_idx):
    "A run killed in its first epoch leaves only run.json: --resume says why it can't, and the same command starts afresh."
    ck = tmp_path / 'ck'
    args = ['train', '--data', str(small_idx), '--epochs', '1', '--no-augment', '--checkpoint', str(ck)]
    with running_until(args, ck / 'run.json'): pass  # then SIGKILLed: as an out-of-memory kill or a power cut
    assert [f.name for f in ck.iterdir() if not f.name.startswith('.')] == ['run.json'], 'killed after its first checkpoint'
    r = run_cli(*args, '--resume')
    assert r.returncode == 2 and 'stopped before its first checkpoint' in r.stderr, r.stderr
    assert r.stderr.rstrip().endswith(f'start it again with nntrain train --data {small_idx} --epochs 1 --bs 128 --lr 0.01 '
                                      f'--no-augment --seed 42 --checkpoint {ck}'), r.stderr  # from run.json: --resume gave none
    r = run_cli('train', '--checkpoint', str(ck), '--resume')  # the short form: the advice is the same whole command
    assert r.returncode == 2 and f'--data {small_idx} --epochs 1' in r.stderr, r.stderr
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    assert 'stopped before its first checkpoint' in r.stdout and 'starting afresh' in r.stdout
    assert sorted(f.name for f in ck.iterdir()) == ['best.pt', 'last.pt', 'run.json', 'training_curves.png']

def test_resume_uses_the_runs_own_data(tmp_path, small_idx):
    "`--resume --checkpoint DIR` alone resumes on the data the run trained on, not on the default data."
    ck, out = tmp_path / 'ck', tmp_path / 'm.json'
    r = run_cli('train', '--data', str(small_idx), '--epochs', '1', '--no-augment', '--checkpoint', str(ck))
    assert r.returncode == 0, r.stderr
    r = run_cli('train', '--resume', '--checkpoint', str(ck), '--metrics-json', str(out))
    assert r.returncode == 0, r.stderr
    assert f'idx files in {small_idx}' in r.stdout and 'bundled sample' not in r.stdout
    assert json.loads(out.read_text())['data'] == f'idx files in {small_idx}'
    r = run_cli('train', '--resume', '--checkpoint', str(ck), '--data', str(SAMPLE))
    assert r.returncode == 2 and 'on its own data' in r.stderr and 'Traceback' not in r.stderr

@pytest.mark.parametrize('case', ['wrong kind', 'under a file', 'dangling link'])
@pytest.mark.parametrize('opt', ['--checkpoint', '--metrics-json', '--plot'])
def test_unwritable_output_paths_are_clear_errors(tmp_path, opt, case):
    "A file where a folder is expected (or a folder where a file is), a path under a file, a path through a link to a"
    "missing target (a drive not mounted): refused at once, naming what is wrong, with no traceback."
    (tmp_path / 'afile').write_text('x')
    (tmp_path / 'runs').symlink_to(tmp_path / 'not-mounted' / 'runs')
    path, says = {'wrong kind': (tmp_path / 'afile' if opt == '--checkpoint' else tmp_path, 'is a f'),
                  'under a file': (tmp_path / 'afile' / 'out' / 'x.png', f"{tmp_path / 'afile'} is a file, not a folder"),
                  'dangling link': (tmp_path / 'runs' / 'x.png',
                                    f"{tmp_path / 'runs'} is a link to {tmp_path / 'not-mounted' / 'runs'}, which does not exist")}[case]
    r = run_cli('train', '--epochs', '1', opt, str(path))
    assert r.returncode == 2 and f'nntrain: error: {opt} {path}' in r.stderr and says in r.stderr, r.stderr
    assert 'Traceback' not in r.stderr
    assert 'data:' not in r.stdout  # before any data is loaded
    assert not (tmp_path / 'not-mounted').exists()

def test_a_run_still_training_keeps_its_folder(tmp_path, small_idx):
    "Past its first checkpoint, a run being trained is not resumed by a second process, nor overwritten by a new run, even"
    "where run.json names a dead process (a trainer in another PID namespace, or two --resume started together): the"
    "trainer holds the folder's lock. The refusals come before any data is loaded."
    ck = tmp_path / 'ck'
    args = ['train', '--data', str(small_idx), '--epochs', '200', '--no-augment', '--checkpoint', str(ck)]
    busy = f'--checkpoint {ck}: another nntrain process is training in this folder now'
    with running_until(args, ck / 'last.pt') as p:
        assert json.loads((ck / 'run.json').read_text())['pid'] == p.pid
        r = run_cli('train', '--checkpoint', str(ck), '--resume')
        assert r.returncode == 2 and busy in r.stderr and 'stop it and then --resume' in r.stderr, r.stderr
        assert 'data:' not in r.stdout
        r = run_cli(*args)
        assert r.returncode == 2 and busy in r.stderr and '--resume' not in r.stderr, r.stderr
        run = json.loads((ck / 'run.json').read_text())  # a pid that means nothing here: the lock still says who trains
        (ck / 'run.json').write_text(json.dumps({**run, 'pid': 2**31 - 1}))
        r = run_cli('train', '--checkpoint', str(ck), '--resume', '--epochs', '200')
        assert r.returncode == 2 and busy in r.stderr, r.stderr
        assert p.poll() is None, 'the run ended while the others were refused: the test proved nothing'
    assert [f.name for f in ck.iterdir() if f.name.startswith('.')] == ['.nntrain.lock']  # left by the kill, and unlocked:
    r = run_cli('train', '--checkpoint', str(ck), '--resume', '--epochs', '3')  # taken (refused for its settings only)
    assert r.returncode == 2 and 'epochs=3 (the run has 200)' in r.stderr, r.stderr

def _interrupt(args, ready):
    "Start `nntrain *args`, send it SIGINT (Ctrl-C) once `ready()` holds, and return `(returncode, stderr)`."
    p = subprocess.Popen(cli_command(*args), env=CLI_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as a terminal's job gets it
    try:
        deadline = time.monotonic() + 300
        while not ready():
            assert p.poll() is None and time.monotonic() < deadline, 'the run ended before it could be interrupted'
            time.sleep(0.005)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None: p.kill(); p.wait()
    return p.returncode, err

def test_ctrl_c_ends_with_one_line_that_says_how_to_continue(tmp_path, small_idx):
    "Ctrl-C: no traceback, exit status 130, and for a checkpointed run the command that continues it, writing its outputs."
    ck = tmp_path / 'ck'
    args = ['train', '--data', str(small_idx), '--epochs', '50', '--no-augment', '--checkpoint', str(ck),
            '--metrics-json', str(tmp_path / 'm.json'), '--plot', str(tmp_path / 'c.png')]
    rc, err = _interrupt(args, lambda: (ck / 'last.pt').exists())
    assert rc == 130, err
    last = err.strip().splitlines()[-1] if err.strip() else ''
    assert 'Traceback' not in err and last.startswith('nntrain: interrupted'), err
    assert last.endswith(f"continue it with nntrain train --checkpoint {ck} --resume --metrics-json {tmp_path / 'm.json'} "
                         f"--plot {tmp_path / 'c.png'}"), err
    fresh = tmp_path / 'fresh'  # interrupted before its first checkpoint: nothing to resume
    rc, err = _interrupt(['train', '--data', str(small_idx), '--epochs', '50', '--checkpoint', str(fresh)],
                         lambda: (fresh / 'run.json').exists())
    assert rc == 130 and 'Traceback' not in err and '--resume' not in err and 'run the same command' in err, err
