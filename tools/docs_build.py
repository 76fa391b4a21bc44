"""Build the documentation site offline into `_docs/`, without quarto (`tools/docs.sh` runs this).

The published site is built by nbdev + quarto (`nbdev_docs`, `.github/workflows/deploy.yaml`). Quarto is a binary
download, so this script builds the same pages from the same notebooks with what pip can install:

1. every notebook under `nbs/` (as `nbdev_test` and `nbdev_docs` find them) is run through nbdev's own docs
   processors (`nbdev.processors.FilterDefaults`, the ones `nbdev_proc_nbs` uses: frontmatter, `show_doc` cells
   after every exported name, `#| hide` and `#| export` cells removed, links to the API docs, ...), with one
   change: where nbdev's `exec_show_docs` runs only the imports, exports and `show_doc` cells, this runs every
   code cell in order in one `execnb` shell, as `nbdev_test` does, skipping cells flagged with settings.ini's
   `tst_flags` (`#| slow`) and `#| eval: false` (their code is still shown). It runs before the processors that
   remove cells, so hidden cells run but are not shown. One fresh process per notebook.
2. the processed, executed notebooks are written to `_proc/_offline/` and rendered to `_docs/`, one page per
   notebook named as nbdev names it (`02_learner.ipynb` -> `learner.html`, so nbdev's API links resolve), with a
   sidebar of every chapter, the `show_doc` entries, code cells with their outputs and figures as PNG files.

Usage: python tools/docs_build.py [NOTEBOOK ...] [--workers N]
With notebooks named, only those run again; the other pages are rendered from their last run in `_proc/_offline/`.
A notebook whose cell raises is still rendered (with the error) and the script exits 1 at the end.
"""
from __future__ import annotations

import argparse, base64, html, json, multiprocessing, os, re, shutil, sys, time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ANSI = re.compile(r'\x1B(?:[@-Z\\-_]|\[[0-?]*[ -/]*[@-~])')
DIRECTIVE = re.compile(r'^\s*#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$')
CACHE = Path('_proc') / '_offline'  # under the quarto project nbdev renders, ignored by quarto (leading '_')


def page_name(rel: Path) -> Path:
    "The page nbdev gives a notebook: `02_learner.ipynb` -> `learner.html` (as `nbdev.doclinks._nbpath2html`)."
    return rel.with_name(re.sub(r'^\d+[a-zA-Z0-9]*_', '', rel.name.lower())).with_suffix('.html')


def find_notebooks(cfg):
    "Every notebook nbdev builds, index first, then in file-name order (the sidebar order)."
    from nbdev.doclinks import nbglob
    nbs = sorted(nbglob(cfg.nbs_path, func=Path), key=lambda p: p.relative_to(cfg.nbs_path).as_posix())
    return sorted(nbs, key=lambda p: p.relative_to(cfg.nbs_path).as_posix() != cfg.get('readme_nb', 'index.ipynb'))


# ---------------------------------------------------------------- executing and processing (in a worker process)

def execute_notebook(src: str, dst: str, skip_flags: list, threads: int) -> dict:
    "Run `src` through nbdev's docs processors, executing every code cell; write the result to `dst`."
    start = time.time()
    os.environ['IN_TEST'] = '1'  # as nbdev_test sets it
    os.environ.setdefault('MPLBACKEND', 'Agg')
    from execnb.nbio import read_nb, write_nb
    from execnb.shell import CaptureShell
    from nbdev import processors as P
    from nbdev.process import NBProcessor, Processor

    from nbdev.config import get_config
    src = Path(src)
    sys.path.insert(0, str(get_config(path=src.parent).config_path))  # the package in the repo, as nbdev_test does
    os.chdir(src.parent)  # notebooks run from their folder, as under nbdev_test
    nb = read_nb(src)
    for c in nb.cells:
        if c.cell_type == 'code': c.outputs, c.execution_count = [], None
    stats = dict(src=str(src), run=0, skipped=0, error=None, error_cell=None)

    def keep_source(cell):
        "Remember the code as written: later processors (hide_line, magics) change what is shown, not what runs."
        cell.exec_src_ = cell.source

    class execute_all(Processor):
        "Run every code cell (nbdev's `exec_show_docs` runs only imports, exports and show_doc)."
        def begin(self):
            fm = getattr(self.nb, 'frontmatter_', {}) or {}
            self.skip_exec = str(fm.get('skip_exec', False)).lower() in ('true', '1', 'yes')
            self.k = CaptureShell(src)
            self.failed, self.started = False, False

        def start(self):
            "Before the first cell runs: show_doc at hand (as nbdev provides it), seeds set for repeatable pages."
            self.started = True
            self.k.run_cell('from nbdev.showdoc import show_doc')
            self.k.run_cell(f'import random as _r; _r.seed(0); del _r\n'
                            f'import numpy as _np; _np.random.seed(0); del _np\n'
                            f'import torch as _t; _t.manual_seed(0); _t.set_num_threads({threads}); del _t')

        def __call__(self, cell):
            if cell.cell_type != 'code' or not cell.source.strip(): return
            d = getattr(cell, 'directives_', None) or {}
            skip = sorted(set(skip_flags) & set(d))
            note = None
            if self.failed: note = 'not run: an earlier cell raised'
            elif skip: note = f'not run when the docs are built (flagged {", ".join(skip)})'
            elif d.get('eval:', [''])[0].lower() == 'false': note = 'not run (eval: false)'
            elif 'nbdev_export' + '(' in cell.source: return
            elif self.skip_exec and not P._do_eval(cell): return
            if note:
                cell.metadata['docs_note'] = note
                stats['skipped'] += 1
                return
            if not self.started: self.start()
            shown = cell.source
            cell.source = cell.get('exec_src_', shown)
            self.k.cell(cell)
            cell.source = shown
            stats['run'] += 1
            if self.k.exc is not None:
                self.failed = True
                stats['error'], stats['error_cell'] = self.k.prettytb(fname=src), cell.source

    procs = list(P.FilterDefaults().procs())
    moved = [p for p in (P.strip_ansi, P.filter_stream_) if p in procs]  # they clean outputs: run after execution
    procs = [p for p in procs if p is not P.exec_show_docs and p not in moved]
    at = procs.index(P.rm_export) if P.rm_export in procs else len(procs)
    procs[at:at] = [execute_all] + moved
    NBProcessor(nb=nb, procs=[keep_source] + procs).process()

    fm = getattr(nb, 'frontmatter_', {}) or {}
    stats.update(title=fm.get('title'), description=fm.get('description'), seconds=round(time.time() - start, 1))
    nb.metadata['docs_build'] = stats
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    write_nb(nb, dst)
    return stats


# ---------------------------------------------------------------- rendering

def slugify(text: str) -> str:
    "Pandoc's (and so quarto's) automatic heading identifier, so nbdev's `page.html#name` links resolve."
    s = ''.join(c for c in text if c.isalnum() or c in '_-. \n\t')
    s = re.sub(r'\s+', '-', s.strip()).lower()
    s = re.sub(r'^[^a-z]+', '', s)
    return s or 'section'


class Renderer:
    def __init__(self, cfg, pages: dict):
        from markdown_it import MarkdownIt
        from pygments.formatters import HtmlFormatter
        self.cfg, self.pages = cfg, pages  # pages: notebook path relative to nbs -> page path relative to _docs
        self.site_url = (cfg.get('doc_host', '') + cfg.get('doc_baseurl', '')).rstrip('/') + '/'
        self.fmt = HtmlFormatter(nowrap=True)
        self.md = MarkdownIt('commonmark', {'html': True, 'highlight': self.highlight}).enable(['table', 'strikethrough'])
        from mdit_py_plugins.dollarmath import dollarmath_plugin  # $..$ and $$..$$ as MathML: no MathJax offline
        self.md.use(dollarmath_plugin, allow_space=True, double_inline=True, renderer=self.math)
        self.md.core.ruler.push('heading_ids', self._heading_ids)
        for rule in ('link_open', 'image'):  # markdown-it binds rules to its renderer: wrap to keep `self`
            self.md.add_render_rule(rule, (lambda f: lambda _r, *a: f(*a))(getattr(self, '_render_' + rule)))

    # -- helpers
    def highlight(self, code, lang='python', attrs=None):
        from pygments import highlight
        from pygments.lexers import get_lexer_by_name, TextLexer
        try: lexer = get_lexer_by_name(lang or 'text')
        except Exception: lexer = TextLexer()
        return highlight(code, lexer, self.fmt)

    def inline(self, text: str) -> str:
        "Titles and descriptions: inline markdown (`code`, *emphasis*), as quarto renders them."
        return self.md.renderInline(str(text))

    @staticmethod
    def math(latex: str, opts: dict) -> str:
        from latex2mathml.converter import convert
        display = 'block' if opts.get('display_mode') else 'inline'
        try: return convert(latex, display=display)
        except Exception: return f'<code class="math">{html.escape(latex)}</code>'

    def rel(self, target: str) -> str:
        "`target` (relative to the site root) as seen from the page being rendered."
        anchor = ''
        if '#' in target: target, anchor = target.split('#', 1); anchor = '#' + anchor
        if not target: return anchor
        return os.path.relpath(target, self.page.parent.as_posix() or '.').replace(os.sep, '/') + anchor

    def fix_url(self, url: str) -> str:
        "Links to the published site and to notebooks become links inside this site."
        if url.startswith(self.site_url): return self.rel(url[len(self.site_url):])
        m = re.match(r'^([^:#?]+\.ipynb)(#.*)?$', url)
        if m:
            nb = (self.nb_rel.parent / m.group(1)).as_posix()
            nb = os.path.normpath(nb).replace(os.sep, '/')
            if nb in self.pages: return self.rel(self.pages[nb].as_posix() + (m.group(2) or ''))
        return url

    # the inline tokens whose text pandoc's `stringify` keeps for a heading's identifier: text, code and math (as TeX)
    HEADING_TEXT = ('text', 'code_inline', 'math_inline', 'math_inline_double')

    def _heading_ids(self, state):
        toks = state.tokens
        for i, t in enumerate(toks):
            if t.type != 'heading_open' or t.attrGet('id'): continue
            children = toks[i + 1].children or []
            text = ''.join(' ' if c.type in ('softbreak', 'hardbreak') else c.content
                           for c in children if c.type in self.HEADING_TEXT + ('softbreak', 'hardbreak'))
            base = slugify(text); slug, n = base, 0
            while slug in self.ids: n += 1; slug = f'{base}-{n}'
            self.ids.add(slug)
            t.attrSet('id', slug)
            # the TOC shows the heading as the page does (code, math), without its links (a TOC entry is a link)
            shown = self.md.renderer.renderInline(children, self.md.options, state.env)
            self.toc.append((int(t.tag[1]), slug, re.sub(r'</?a\b[^>]*>', '', shown)))

    def _render_link_open(self, tokens, idx, options, env):
        t = tokens[idx]
        if t.attrGet('href') is not None: t.attrSet('href', self.fix_url(t.attrGet('href')))
        return self.md.renderer.renderToken(tokens, idx, options, env)

    def _render_image(self, tokens, idx, options, env):
        t = tokens[idx]
        src = t.attrGet('src') or ''
        if src.startswith('attachment:'):
            name = src.split(':', 1)[1]
            data = (self.attachments.get(name) or {})
            mime = next((m for m in data if m.startswith('image/')), None)
            if mime:
                t.attrSet('src', self.save_file(f'attachment-{name}', base64.b64decode(''.join(data[mime]))))
        t.attrSet('loading', 'eager')
        return self.md.renderer.image(tokens, idx, options, env)

    def save_file(self, name: str, data: bytes) -> str:
        "Write a page's file (figure, attachment) next to it; return its src relative to the page."
        rel = Path(self.page.stem + '_files') / 'figure-html' / re.sub(r'[^\w.-]', '_', name)
        dest = self.out / self.page.parent / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        return rel.as_posix()

    def markdown(self, text: str) -> str:
        # pandoc link attributes (`[source](url){target="_blank" style="..."}`, from show_doc) -> raw HTML links
        def link_attrs(m):
            attrs = ' '.join(f'{k}="{html.escape(v)}"' for k, v in re.findall(r'([\w-]+)="([^"]*)"', m.group(3)))
            return f'<a href="{html.escape(self.fix_url(m.group(2)))}" {attrs}>{html.escape(m.group(1))}</a>'
        text = re.sub(r'\[([^\]]*)\]\(([^)\s]+)\)\{([^}]*)\}', link_attrs, text)

        # quarto fenced divs (`::: {.callout-note}` ... `:::`) -> <div class="callout-note">
        def fence(m):
            attrs = m.group(1) or ''
            if not attrs.strip(): return '\n</div>\n'
            classes = ' '.join(re.findall(r'\.([\w-]+)', attrs)) or 'div'
            return f'\n<div class="{classes}">\n'
        text = re.sub(r'^:::+\s*(\{[^}]*\}|[\w-]+)?\s*$', fence, text, flags=re.M)
        return self.md.render(text)

    # -- outputs
    @staticmethod
    def stream_text(text: str) -> str:
        "Text as a terminal shows it: ANSI codes removed, carriage returns overwrite (progress bars)."
        text = ANSI.sub('', text)
        text = re.sub(r'\r+\n', '\n', text)
        lines = []
        for line in text.split('\n'):
            parts = line.split('\r')
            shown = parts[0]
            for p in parts[1:]: shown = p + shown[len(p):]
            lines.append(shown)
        return '\n'.join(lines)

    def output(self, o, cell_idx: int, j: int, asis: bool) -> str:
        kind = o.get('output_type')
        if kind == 'stream':
            name = o.get('name', 'stdout')
            text = self.stream_text(''.join(o.get('text', []))).rstrip('\n')
            if not text.strip(): return ''
            return f'<div class="cell-output cell-output-{name}"><pre><code>{html.escape(text)}</code></pre></div>\n'
        if kind == 'error':
            tb = ANSI.sub('', '\n'.join(s.rstrip('\n') for s in o.get('traceback', [])))
            text = tb or f"{o.get('ename')}: {o.get('evalue')}"
            return f'<div class="cell-output cell-output-error"><pre><code>{html.escape(text)}</code></pre></div>\n'
        data, meta = o.get('data', {}), o.get('metadata', {})
        join = lambda v: ''.join(v) if isinstance(v, list) else str(v)
        cls = 'cell-output cell-output-display'
        if 'text/markdown' in data and asis:
            return f'<div class="{cls} cell-output-markdown">\n{self.markdown(join(data["text/markdown"]))}</div>\n'
        if 'text/html' in data:
            return f'<div class="{cls} cell-output-html">\n{join(data["text/html"])}\n</div>\n'
        for mime, ext in (('image/png', 'png'), ('image/jpeg', 'jpg'), ('image/gif', 'gif')):
            if mime in data:
                self.n_figures += 1
                src = self.save_file(f'cell-{cell_idx}-output-{j}.{ext}', base64.b64decode(join(data[mime])))
                m = meta.get(mime, {}) if isinstance(meta.get(mime), dict) else {}
                size = ''.join(f' {k}="{int(m[k])}"' for k in ('width', 'height') if k in m)
                alt = join(data.get('text/plain', ''))
                alt = alt if alt and not alt.startswith('<') else f'Figure {self.n_figures}'
                return (f'<div class="{cls} cell-output-figure"><figure><img src="{html.escape(src)}"{size} '
                        f'alt="{html.escape(alt)}"></figure></div>\n')
        if 'image/svg+xml' in data:
            self.n_figures += 1
            return f'<div class="{cls} cell-output-figure">{join(data["image/svg+xml"])}</div>\n'
        if 'text/markdown' in data:
            return f'<div class="{cls} cell-output-markdown">\n{self.markdown(join(data["text/markdown"]))}</div>\n'
        if 'text/plain' in data:
            text = self.stream_text(join(data['text/plain']))
            return f'<div class="{cls}"><pre><code>{html.escape(text)}</code></pre></div>\n'
        return ''

    # -- cells
    def code_cell(self, cell, idx: int) -> str:
        opts, lines = {}, cell['source'].splitlines()
        while lines and DIRECTIVE.match(lines[0]):
            k, v = DIRECTIVE.match(lines[0]).groups(); opts[k] = v.strip('"\'')
            lines.pop(0)
        src = '\n'.join(lines).strip('\n')
        if opts.get('include', '').lower() == 'false': return ''
        outputs = cell.get('outputs', []) if opts.get('output', '').lower() != 'false' else []
        note = cell.get('metadata', {}).get('docs_note')
        is_doc = bool(re.match(r'^\s*show_doc\(', src))
        if not src and not outputs: return ''
        parts = []
        if src and opts.get('echo', '').lower() != 'false':
            code = (f'<div class="cell-code"><pre class="sourceCode python"><code>{self.highlight(src)}'
                    f'</code></pre></div>\n')
            if 'code-fold' in opts:
                summary = html.escape(opts.get('code-summary', 'Code'))
                code = f'<details class="code-fold"><summary>{summary}</summary>\n{code}</details>\n'
            parts.append(code)
        if note: parts.append(f'<p class="cell-note">{html.escape(note)}</p>\n')
        asis = opts.get('output', '').lower() == 'asis'
        parts += [self.output(o, idx, j, asis) for j, o in enumerate(outputs)]
        cls = 'cell doc-entry' if is_doc else 'cell'
        return f'<div class="{cls}" id="cell-{idx}">\n{"".join(parts)}</div>\n'

    def render_page(self, nb_rel: Path, nb: dict, nav: list, out: Path) -> dict:
        "Write one page; return what the manifest records about it."
        self.nb_rel, self.page, self.out = nb_rel, self.pages[nb_rel.as_posix()], out
        self.ids, self.toc, self.n_figures = set(), [], 0
        stats = nb.get('metadata', {}).get('docs_build', {})
        title, description = stats.get('title'), stats.get('description')
        body = []
        for idx, cell in enumerate(nb['cells']):
            src = ''.join(cell.get('source', ''))
            cell = dict(cell, source=src)
            self.attachments = cell.get('attachments', {})
            if cell['cell_type'] == 'markdown':
                if src.strip(): body.append(f'<div class="cell cell-markdown">\n{self.markdown(src)}</div>\n')
            elif cell['cell_type'] == 'code':
                body.append(self.code_cell(cell, idx))
            elif cell['cell_type'] == 'raw' and cell.get('metadata', {}).get('raw_mimetype') == 'text/html':
                body.append(src)
        title = title or self.cfg.get('title', 'nntrain')
        error = stats.get('error')
        banner = ''
        if error:
            banner = ('<div class="build-error"><strong>This page did not build cleanly</strong>: a cell raised '
                      f'while the docs were built.<pre><code>{html.escape(ANSI.sub("", error))}</code></pre></div>\n')
        self.html[self.page.as_posix()] = self.write(title, description, banner + ''.join(body), nav)
        return dict(page=self.page.as_posix(), notebook=nb_rel.as_posix(), title=title, figures=self.n_figures,
                    doc_entries=sum('doc-entry' in b for b in body), cells_run=stats.get('run', 0),
                    cells_skipped=stats.get('skipped', 0), seconds=stats.get('seconds'), error=bool(error))

    def write(self, title: str, description, content: str, nav: list) -> str:
        cfg, rel = self.cfg, self.rel
        site = html.escape(cfg.get('title', 'nntrain'))
        items = []
        for nb_rel, page, nav_title in nav:
            here = page == self.page
            active = ' class="active" aria-current="page"' if here else ''
            items.append(f'<li><a href="{rel(page.as_posix())}"{active}>{self.inline(nav_title)}</a></li>')
        toc = ''.join(f'<li class="toc-h{lvl}"><a href="#{slug}">{shown}</a></li>'
                      for lvl, slug, shown in self.toc if lvl in (2, 3) and not shown.startswith(('source',)))
        toc = f'<nav id="toc" aria-label="On this page"><h2>On this page</h2><ul>{toc}</ul></nav>' if toc else ''
        desc = f'<p class="description">{self.inline(description)}</p>' if description else ''
        git = cfg.get('git_url', '')
        plain = html.escape(re.sub(r'<[^>]+>', '', html.unescape(self.inline(title))))
        page_title = plain if title == cfg.get('title') else f'{plain} – {site}'
        return f'''<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{page_title}</title>
<link rel="stylesheet" href="{rel('site.css')}">
<link rel="stylesheet" href="{rel('styles.css')}">
</head>
<body>
<header id="navbar"><a class="site-title" href="{rel('index.html')}">{site}</a>
<span class="site-description">{html.escape(cfg.get('description', ''))}</span>
{f'<a class="repo" href="{html.escape(git)}">GitHub</a>' if git else ''}</header>
<div id="layout">
<nav id="sidebar" aria-label="Chapters"><ul>
{chr(10).join(items)}
</ul></nav>
<main id="content">
<header id="title-block"><h1 class="title">{self.inline(title)}</h1>{desc}</header>
{content}
</main>
{toc}
</div>
<footer id="footer">Built offline by <code>tools/docs.sh</code> from the notebooks in <code>{html.escape(cfg.nbs_path.name)}/</code>.</footer>
</body>
</html>
'''

    # a link nbdev makes of a backticked name: `[`Learner.fit`](learner.html#learner.fit)`, rendered as below
    DOC_LINK = re.compile(r'<a href="([^"]*)"[^>]*>\s*<code>([\w.]+)</code>\s*</a>')

    def save_pages(self, out: Path) -> list:
        """Write the pages; return the links that were pointed at another anchor.

        nbdev links every backticked name it knows (`Learner.fit` -> `learner.html#learner.fit`), but a method gets
        an API entry only where a notebook has a `show_doc` cell for it. Such a link, and only such a link, is pointed
        at the entry of the nearest dotted prefix that has one (`#learner.fit` -> `#learner`). Any other link to an
        anchor that does not exist (a misspelt anchor in prose, a backticked private helper, a heading renamed)
        raises `BrokenAnchors`, naming the page, the link and the notebook, after the pages are written."""
        ids = {p: set(re.findall(r'\sid="([^"]+)"', h)) for p, h in self.html.items()}
        notebook = {pg.as_posix(): nb for nb, pg in (getattr(self, 'pages', None) or {}).items()}
        fixed, broken = [], []
        for page, text in self.html.items():
            def target_of(url):
                "(path, page it points to, fragment) of a link into the site with a fragment; None otherwise."
                if re.match(r'^[a-z][\w+.-]*:|^//', url) or '#' not in url: return None
                path, frag = url.split('#', 1)
                target = os.path.normpath(os.path.join(os.path.dirname(page), path)).replace(os.sep, '/') if path else page
                return (path, target, frag) if target in ids else None

            def doc_link(m):
                url, name = html.unescape(m.group(1)), m.group(2)
                t = target_of(url)
                if t is None or t[2] in ids[t[1]] or t[2] != name.lower() or '.' not in t[2]: return m.group(0)
                path, target, frag = t
                new = frag.rpartition('.')[0]
                while new and new not in ids[target]: new = new.rpartition('.')[0]
                if not new: return m.group(0)  # no entry for any prefix: reported below
                fixed.append(f'{page}: #{frag} -> #{new}')
                return m.group(0).replace(m.group(1), html.escape(f'{path}#{new}'), 1)

            text = self.DOC_LINK.sub(doc_link, text)
            for m in re.finditer(r'\shref="([^"]*)"', text):
                t = target_of(html.unescape(m.group(1)))
                if t is not None and t[2] not in ids[t[1]]:
                    nb = notebook.get(page)
                    broken.append(f'{page}: link {html.unescape(m.group(1))!r}: no id {t[2]!r} in {t[1]}'
                                  + (f' (from {nb})' if nb else ''))
            (out / page).parent.mkdir(parents=True, exist_ok=True)
            (out / page).write_text(text, encoding='utf-8')
        if broken: raise BrokenAnchors(broken, fixed)
        return fixed


class BrokenAnchors(Exception):
    "Links to anchors that no page has."
    def __init__(self, broken, fixed=()):
        self.broken, self.fixed = broken, list(fixed)
        super().__init__(f'{len(broken)} link(s) to an anchor that does not exist (fix the notebook: a backticked name '
                         'nbdev links must have an API entry, a heading link the heading\'s id):\n  ' + '\n  '.join(broken))


SITE_CSS = '''
:root { --sidebar: 250px; --accent: #2780e3; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: #212529; background: #fff; }
a { color: var(--accent); text-decoration: none; } a:hover { text-decoration: underline; }
#navbar { position: sticky; top: 0; z-index: 10; display: flex; align-items: baseline; gap: 1rem; padding: .6rem 1.2rem;
          background: var(--accent); color: #fff; }
#navbar a { color: #fff; } .site-title { font-weight: 600; font-size: 1.2rem; }
.site-description { opacity: .85; font-size: .9rem; flex: 1; } .repo { font-size: .9rem; }
#layout { display: flex; align-items: flex-start; }
#sidebar { position: sticky; top: 3rem; width: var(--sidebar); flex: none; max-height: calc(100vh - 3rem); overflow-y: auto;
           padding: 1.2rem 1rem; border-right: 1px solid #e5e5e5; }
#sidebar ul { list-style: none; margin: 0; padding: 0; } #sidebar li { margin: .15rem 0; }
#sidebar a { display: block; padding: .25rem .5rem; border-radius: 4px; color: #343a40; font-size: .95rem; }
#sidebar a.active { background: #e7f1fc; color: var(--accent); font-weight: 600; }
#content { flex: 1; min-width: 0; max-width: 920px; padding: 1.5rem 2rem 3rem; }
#toc { position: sticky; top: 3rem; width: 220px; flex: none; padding: 1.5rem 1rem; font-size: .85rem; }
#toc h2 { font-size: .9rem; margin: 0 0 .5rem; } #toc ul { list-style: none; padding: 0; margin: 0; }
#toc .toc-h3 { padding-left: .8rem; } #toc a { color: #495057; }
@media (max-width: 1200px) { #toc { display: none; } }
@media (max-width: 760px) { #layout { display: block; } #sidebar { position: static; width: auto; max-height: none;
  border-right: none; border-bottom: 1px solid #e5e5e5; } }
h1.title { margin: .2rem 0 .3rem; font-size: 2.2rem; }
#title-block { margin-bottom: 1.5rem; border-bottom: 1px solid #e5e5e5; padding-bottom: .8rem; }
.description { font-size: 1.15rem; color: #6c757d; margin: 0; }
h2 { margin-top: 2rem; border-bottom: 1px solid #eee; padding-bottom: .2rem; } h3 { margin-top: 1.5rem; }
pre { background: #f7f7f7; padding: .7rem .9rem; border-radius: 4px; overflow-x: auto; font-size: .87rem; line-height: 1.45; }
code { font-family: SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; }
:not(pre) > code { background: #f3f3f3; padding: .1em .3em; border-radius: 3px; font-size: .9em; color: #7d12ba; }
a > code { color: inherit; }
table { border-collapse: collapse; margin: 1rem 0; } th, td { border: 1px solid #dee2e6; padding: .35rem .7rem; }
th { background: #f8f9fa; }
.cell-code pre { margin-bottom: 0; }
.cell-output pre { margin: 0; background: none; border-left: 2px solid lightsalmon; border-radius: 0; }
.cell-output-stderr pre { background: #fff8f0; }
.cell-output-error pre { background: #fdecea; border-left-color: #d9534f; }
.cell-output img { max-width: 100%; height: auto; }
.cell-output figure { margin: .5rem 0; }
.cell-note { margin: .2rem 0 0; font-size: .85rem; color: #6c757d; font-style: italic; }
.doc-entry { margin: 1.5rem 0; padding: .2rem 1rem .4rem; border: 1px solid #dee2e6; border-radius: 6px;
             box-shadow: 0 1px 2px rgba(0,0,0,.05); }
.doc-entry pre { border-left: none; background: #f7f7f7; }
.doc-entry hr { display: none; } .doc-entry h3 { margin-top: .6rem; font-family: SFMono-Regular, Menlo, monospace; }
details.code-fold summary { cursor: pointer; color: #6c757d; font-size: .9rem; }
.callout-note, .callout-tip, .callout-warning, .callout-important, .callout-caution {
  border-left: 4px solid var(--accent); background: #f3f8fd; padding: .5rem 1rem; margin: 1rem 0; border-radius: 4px; }
.callout-warning, .callout-caution { border-left-color: #f0ad4e; background: #fdf8ef; }
.callout-important { border-left-color: #d9534f; background: #fdf1f1; }
.build-error { border: 2px solid #d9534f; padding: .5rem 1rem; border-radius: 6px; margin-bottom: 1rem; }
math[display="block"] { margin: .8rem 0; font-size: 1.1em; }
#footer { padding: 1rem 2rem; font-size: .8rem; color: #6c757d; border-top: 1px solid #e5e5e5; }
'''


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('notebooks', nargs='*', help='only run these notebooks again (default: all)')
    ap.add_argument('--workers', type=int, default=int(os.environ.get('NNTRAIN_DOCS_WORKERS', 0)) or None,
                    help='notebooks run at once (default: 2, or 1 on a one-core machine)')
    args = ap.parse_args(argv)

    from nbdev.config import get_config
    cfg = get_config()
    root = cfg.config_path
    os.chdir(root)
    nbs_path, out, cache = cfg.nbs_path, Path(cfg.doc_path), root / CACHE
    notebooks = find_notebooks(cfg)
    rels = [p.relative_to(nbs_path) for p in notebooks]
    pages = {r.as_posix(): page_name(r) for r in rels}

    if args.notebooks:
        todo = [Path(a).resolve() for a in args.notebooks]
        unknown = [str(p) for p in todo if p not in [n.resolve() for n in notebooks]]
        if unknown: ap.error(f'not notebooks of the docs (under {nbs_path}): {", ".join(unknown)}')
    else:
        todo = notebooks
        shutil.rmtree(cache, ignore_errors=True)

    skip_flags = cfg.get('tst_flags', '').split()
    cpus = os.cpu_count() or 1
    workers = max(1, min(args.workers or min(2, cpus), len(todo) or 1))
    threads = max(1, cpus // workers)
    print(f'docs: running {len(todo)} notebook(s), {workers} at a time (cells flagged {", ".join(skip_flags) or "-"} '
          f'are not run)', flush=True)
    start = time.time()
    results = []
    ctx = multiprocessing.get_context('spawn')
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, max_tasks_per_child=1) as ex:
        futs = {ex.submit(execute_notebook, str(p), str(cache / p.relative_to(nbs_path).with_suffix('.ipynb')),
                          skip_flags, threads): p for p in todo}
        for fut, p in futs.items():
            try: r = fut.result()
            except Exception as e:  # the processors themselves failed (not a cell: those are caught)
                r = dict(src=str(p), error=f'{type(e).__name__}: {e}', run=0, skipped=0, seconds=None)
            results.append(r)
            state = 'FAILED' if r['error'] else 'ok'
            print(f'  {state:6} {Path(r["src"]).relative_to(root)}: {r["run"]} cells run, {r["skipped"]} not run, '
                  f'{r["seconds"]}s', flush=True)

    # render every page that has a run in the cache (named notebooks just ran; the others ran before)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    from nbdev.frontmatter import FrontmatterProc
    from nbdev.process import NBProcessor
    nav = []
    for p, r in zip(notebooks, rels):
        fm = getattr(NBProcessor(p, procs=FrontmatterProc, process=True).nb, 'frontmatter_', {}) or {}
        nav.append((r, pages[r.as_posix()], fm.get('title') or cfg.get('title', 'nntrain')))
    renderer, manifest, missing = Renderer(cfg, pages), [], []
    renderer.html = {}
    for r in rels:
        f = cache / r.with_suffix('.ipynb')
        if not f.exists(): missing.append(r.as_posix()); continue
        manifest.append(renderer.render_page(r, json.loads(f.read_text(encoding='utf-8')), nav, out))
    try: fixed, broken = renderer.save_pages(out), None
    except BrokenAnchors as e: fixed, broken = e.fixed, e
    if fixed: print(f'docs: {len(fixed)} link(s) to a name without an API entry of its own now go to the nearest '
                    f'entry, e.g. {fixed[0]}')
    (out / 'site.css').write_text(SITE_CSS + '\n' + renderer.fmt.get_style_defs(['.sourceCode', '.cell-markdown pre', '.cell-output-markdown pre']) + '\n')
    styles = nbs_path / 'styles.css'
    (out / 'styles.css').write_text(styles.read_text() if styles.exists() else '')
    for f in sorted(nbs_path.rglob('*')):  # images and other files the notebooks link to, as nbdev_proc_nbs copies them
        rel = f.relative_to(nbs_path)
        if (f.is_file() and f.suffix.lower() in ('.png', '.jpg', '.jpeg', '.gif', '.svg', '.webp', '.pdf', '.csv')
                and not any(part.startswith(('.', '_')) for part in rel.parts)):
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, out / rel)
    (out / 'site.json').write_text(json.dumps(dict(pages=manifest, not_built=missing), indent=1) + '\n')
    print(f'docs: {len(manifest)} page(s) in {out}/ ({time.time() - start:.0f}s); open {out}/index.html', flush=True)
    if missing: print(f'docs: not built yet (run tools/docs.sh without arguments): {", ".join(missing)}')
    failed = [r for r in results if r['error']]
    for r in failed:
        print(f'\n== {r["src"]} raised while building the docs:\n{r["error"]}', file=sys.stderr)
    if broken: print(f'\n== docs: {broken}', file=sys.stderr)
    return 1 if failed or broken else 0


if __name__ == '__main__':
    sys.exit(main())
