"Every code block in README.md runs, and README is what nbs/index.ipynb says."
import os, re, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / 'README.md').read_text()

def blocks(lang):
    return re.findall(rf'```{lang}\n(.*?)```', README, flags=re.S)

def offline_env():
    return {**os.environ, 'HF_HUB_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1', 'MPLBACKEND': 'Agg',
            'PATH': f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}

def test_readme_is_in_step_with_the_index_notebook():
    r = subprocess.run([sys.executable, str(ROOT / 'tools' / 'readme.py'), '--check'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

def test_python_blocks_run_in_order(tmp_path):
    code = '\n\n'.join(blocks('python'))
    assert 'Learner(' in code and 'class StopAtAccuracy' in code
    script = tmp_path / 'readme_example.py'
    script.write_text(code)
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=offline_env(), capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert 'accuracy' in r.stdout

def test_first_command_installs_and_trains():
    "README's first command, run as written from the repository root (offline it trains on the bundled sample)."
    first = blocks('bash')[0].strip()
    assert first == 'pip install -e . && nntrain train'
    cmd = first.replace('pip install', f'{sys.executable} -m pip install -q --no-deps', 1)  # deps: already in this env
    r = subprocess.run(['bash', '-c', cmd], cwd=ROOT, env=offline_env(), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert 'bundled sample' in r.stdout and 'valid accuracy' in r.stdout

def test_second_command_is_what_ci_runs():
    "`bash .ci/run` is the test command; CI runs exactly it, so running it here again would recurse."
    assert blocks('bash')[1].strip() == 'bash .ci/run'
    ci = (ROOT / '.ci' / 'run').read_text()
    assert 'nbdev_test' in ci and 'pytest' in ci and 'pip install' in ci
