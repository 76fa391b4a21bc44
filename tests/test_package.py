"""The package as users get it: `python -m build` makes the sdist and the wheel, and the wheel, installed into a fresh
virtual environment with no dev requirements, imports every module and trains.

This is what proves `requirements` in settings.ini complete (a module that imports a package only the dev extras
bring fails here) and that the sample data ships in the wheel. It builds from a copy of the files a clone would have
(tracked plus new, not ignored), so nothing is written into the working tree and no stale build/ leaks in.
About a minute: the build isolation and the venv install from the package index (pip's cache makes it quick).
"""
import email, json, os, shlex, shutil, subprocess, sys, tarfile, zipfile
from configparser import ConfigParser
from importlib import metadata
from pathlib import Path

import pytest

pytestmark = pytest.mark.package

ROOT = Path(__file__).resolve().parents[1]
CFG = ConfigParser(delimiters=['=']); CFG.read(ROOT / 'settings.ini', encoding='utf-8')
CFG = CFG['DEFAULT']
LIB = CFG['lib_name']


def run(cmd, cwd, timeout=600, env=None):
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})})
    assert r.returncode == 0, f'{shlex.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-6000:]}'
    return r


def source_files():
    "The files a clone would have, plus new ones not ignored: what the sdist is built from."
    r = run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=ROOT)
    return sorted({f for f in r.stdout.split('\0') if f and (ROOT / f).is_file()})


@pytest.fixture(scope='module')
def built(tmp_path_factory):
    "Build the sdist, then the wheel from it (`python -m build` with no flags), from a copy of the source."
    assert (ROOT / 'README.md').exists(), ('README.md is missing: setup.py reads it as the long description and '
                                           'MANIFEST.in ships it (nbdev_readme writes it from nbs/index.ipynb)')
    tmp = tmp_path_factory.mktemp('pkg')
    src, dist = tmp / 'src', tmp / 'dist'
    files = source_files()
    for f in files:
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, src / f)
    run([sys.executable, '-m', 'build', '--outdir', dist, src], cwd=tmp)
    wheels, sdists = sorted(dist.glob('*.whl')), sorted(dist.glob('*.tar.gz'))
    assert len(wheels) == 1 and len(sdists) == 1, os.listdir(dist)
    return dict(wheel=wheels[0], sdist=sdists[0], files=files, tmp=tmp)


def test_wheel_and_sdist_contents(built):
    whl = set(zipfile.ZipFile(built['wheel']).namelist())
    with tarfile.open(built['sdist']) as t:
        top = t.getnames()[0].split('/')[0]
        sdist = {n.split('/', 1)[1] for n in t.getnames() if '/' in n}
    modules = [f for f in built['files'] if f.startswith(f'{LIB}/') and f.endswith('.py')]
    data = [f for f in built['files'] if f.startswith(f'{LIB}/data/')]
    assert modules, 'no modules found'
    assert not (missing := [f for f in modules if f not in whl]), f'modules missing from the wheel: {missing}'
    assert not (missing := [f for f in data if f not in whl]), f'{LIB}/data files missing from the wheel: {missing}'
    assert not (missing := [f for f in data if f not in sdist]), f'{LIB}/data files missing from the sdist: {missing}'
    for f in ('setup.py', 'settings.ini', 'LICENSE', 'README.md'):
        assert f in sdist, f'{f} missing from the sdist {top}'
    stray = [f for f in whl if not (f.startswith(f'{LIB}/') or '.dist-info/' in f)]
    assert not stray, f'files outside the package in the wheel: {stray}'
    assert not [f for f in whl if '__pycache__' in f or f.endswith('.pyc')]
    if (ROOT / LIB / 'data' / 'fashion_mnist_sample').exists():
        assert any(f.startswith(f'{LIB}/data/fashion_mnist_sample/') for f in whl), 'the Fashion-MNIST sample is not in the wheel'


def test_wheel_metadata(built):
    z = zipfile.ZipFile(built['wheel'])
    name = next(n for n in z.namelist() if n.endswith('.dist-info/METADATA'))
    meta = email.message_from_bytes(z.read(name))
    assert meta['Name'] == LIB and meta['Version'] == CFG['version']
    reqs = meta.get_all('Requires-Dist') or []
    runtime = sorted(r.replace(' ', '') for r in reqs if 'extra' not in r)
    dev = [r for r in reqs if 'extra == "dev"' in r]
    assert runtime == sorted(r.replace(' ', '') for r in shlex.split(CFG['requirements'])), runtime
    assert len(dev) == len(shlex.split(CFG['dev_requirements']))
    eps = z.read(name.replace('METADATA', 'entry_points.txt')).decode()
    for script in CFG.get('console_scripts', '').split():
        assert script.replace('=', ' = ') in eps, f'console script {script} missing from the wheel:\n{eps}'


@pytest.fixture(scope='module')
def installed(built):
    "A fresh venv (no system site-packages, no dev extras) with the wheel installed."
    tmp = built['tmp']
    venv = tmp / 'venv'
    run([sys.executable, '-m', 'venv', venv], cwd=tmp)
    py = venv / 'bin' / 'python'
    # Pin what pip picks to the versions of this environment (CI's: torch==2.13.0 from .ci/run), so the install comes
    # from the cache/local wheels and a newer torch build is never downloaded. Pins add no packages: what is missing
    # from `requirements` still fails to import.
    pins = {}
    for d in metadata.distributions():
        name = d.metadata['Name']
        if name and name.lower() != LIB: pins.setdefault(name.lower(), f'{name}=={d.version}')
    pins = sorted(pins.values())
    (tmp / 'constraints.txt').write_text('\n'.join(pins) + '\n')
    run([py, '-m', 'pip', 'install', '-q', '--no-compile', '-c', tmp / 'constraints.txt', built['wheel']], cwd=tmp, timeout=900)
    return dict(py=py, bin=venv / 'bin', tmp=tmp)


FIT = r'''
import importlib, json, pkgutil, sys
import nntrain
assert '/site-packages/' in nntrain.__file__, f'imported the source tree, not the wheel: {nntrain.__file__}'
mods = sorted(m.name for m in pkgutil.walk_packages(nntrain.__path__, 'nntrain.'))
for m in mods: importlib.import_module(m)
dev = sorted({'nbdev', 'execnb', 'pytest', 'IPython', 'ipykernel', 'playwright'} & {m.split('.')[0] for m in sys.modules})

import torch, torch.nn.functional as F
from torch import nn
from nntrain.dataloaders import DataLoaders, load_fashion_mnist_sample
from nntrain.learner import Learner
torch.manual_seed(0)
dls = DataLoaders.from_hf_dd(load_fashion_mnist_sample(), batch_size=256, in_memory=True)
model = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
def valid_loss():
    with torch.no_grad():
        return sum(F.cross_entropy(model(xb), yb, reduction='sum').item() for xb, yb in dls.valid) / dls.valid.n
before = valid_loss()
Learner(model, dls, F.cross_entropy, torch.optim.Adam, lr=3e-3).fit(2)
print(json.dumps(dict(modules=mods, dev_imported=dev, before=before, after=valid_loss(), version=nntrain.__version__)))
'''


def test_installed_wheel_imports_every_module_and_fits(installed, built):
    # cwd outside the repo and a clean PYTHONPATH: only the installed wheel can be imported
    r = run([installed['py'], '-c', FIT], cwd=installed['tmp'], timeout=600,
            env={'PYTHONPATH': '', 'HF_HUB_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1', 'MPLBACKEND': 'Agg'})
    res = json.loads(r.stdout.strip().splitlines()[-1])
    src_mods = sorted(f[:-3].replace('/', '.') for f in built['files']
                      if f.startswith(f'{LIB}/') and f.endswith('.py') and not f.endswith('__init__.py'))
    assert sorted(res['modules']) == src_mods
    assert res['dev_imported'] == [], f'importing nntrain loaded dev-only packages: {res["dev_imported"]}'
    assert res['version'] == CFG['version']
    assert res['after'] < res['before'] * 0.8, f'the fit did not train: valid loss {res["before"]:.3f} -> {res["after"]:.3f}'


def test_console_script_runs(installed):
    for script in CFG.get('console_scripts', '').split():
        name = script.split('=')[0]
        exe = installed['bin'] / name
        assert exe.exists(), f'console script {name} not installed'
        run([exe, '--help'], cwd=installed['tmp'], timeout=120, env={'PYTHONPATH': ''})
