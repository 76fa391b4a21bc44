"""Convert notebooks to and from a plain-text cell format, for editing notebooks in a text editor.

The text format is one cell after another, each opened by a marker line:

    # %% [markdown]      a markdown cell (its lines follow as they are)
    # %%                 a code cell

Usage:
    python tools/nbpy.py to-text nbs/02_learner.ipynb > /tmp/02_learner.txt
    python tools/nbpy.py to-nb /tmp/02_learner.txt nbs/02_learner.ipynb

The notebook stays the source of the library: this only edits it. Run `nbdev_clean` afterwards.
"""
import json, re, sys
from pathlib import Path

MD, CODE = '# %% [markdown]', '# %%'

def text_to_cells(text):
    "Split text into (cell_type, source) pairs at marker lines."
    cells, kind, lines = [], None, []
    def flush():
        if kind is not None:
            cells.append((kind, '\n'.join(lines).strip('\n')))
    for line in text.splitlines():
        if line.rstrip() in (MD, CODE):
            flush()
            kind, lines = ('markdown' if line.rstrip() == MD else 'code'), []
        else:
            lines.append(line)
    flush()
    return cells

def cells_to_nb(cells):
    "A minimal nbformat-4 notebook dict from (cell_type, source) pairs."
    def cell(kind, src):
        c = {'cell_type': kind, 'metadata': {}, 'source': src.splitlines(keepends=True)}
        if kind == 'code': c.update(execution_count=None, outputs=[])
        return c
    return {'cells': [cell(k, s) for k, s in cells],
            'metadata': {'kernelspec': {'display_name': 'python3', 'language': 'python', 'name': 'python3'}},
            'nbformat': 4, 'nbformat_minor': 4}

def nb_to_text(nb):
    "The text form of a notebook dict."
    out = []
    for c in nb['cells']:
        out.append(MD if c['cell_type'] == 'markdown' else CODE)
        out.append(''.join(c['source']))
    return '\n'.join(out) + '\n'

if __name__ == '__main__':
    cmd, *args = sys.argv[1:]
    if cmd == 'to-nb':
        src, dst = args
        nb = cells_to_nb(text_to_cells(Path(src).read_text()))
        tmp = Path(dst).with_suffix('.ipynb.tmp')  # write then rename: readers never see half a notebook
        tmp.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')
        tmp.replace(dst)
    elif cmd == 'to-text':
        sys.stdout.write(nb_to_text(json.loads(Path(args[0]).read_text())))
    else:
        sys.exit(__doc__)
