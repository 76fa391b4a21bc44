"""Write README.md from nbs/index.ipynb, so the two stay in step (nbdev_readme needs quarto, which we can't
install everywhere). Markdown cells are copied; code cells become ```python blocks; cells marked `#| hide`
are left out, and `#|` directive lines are dropped.

    python tools/readme.py           # writes README.md
    python tools/readme.py --check   # exits 1 if README.md is out of step with nbs/index.ipynb
"""
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

def render(nb):
    "README text for an index notebook dict."
    parts = []
    for cell in nb['cells']:
        src = ''.join(cell['source']).strip('\n')
        if cell['cell_type'] == 'markdown':
            parts.append(src)
        elif cell['cell_type'] == 'code':
            lines = src.splitlines()
            if any(l.replace(' ', '') == '#|hide' for l in lines): continue
            code = '\n'.join(l for l in lines if not l.startswith('#|')).strip('\n')
            if code: parts.append(f'```python\n{code}\n```')
    return '\n\n'.join(parts) + '\n'

def main(argv):
    text = render(json.loads((ROOT / 'nbs' / 'index.ipynb').read_text()))
    readme = ROOT / 'README.md'
    if '--check' in argv:
        if readme.read_text() != text:
            sys.exit('README.md is out of step with nbs/index.ipynb: run `python tools/readme.py`.')
        return
    readme.write_text(text)

if __name__ == '__main__':
    main(sys.argv[1:])
