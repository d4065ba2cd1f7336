#!/usr/bin/env python3
"""Checks the module structure of `src/` (see ARCHITECTURE.md, "Rooms"):

- no import circle between modules (files) anywhere in `src/`;
- in `src/server/`, no room imports a room above it:
  core < guard < factors < forward_auth, signin < proxy < account, ops
  < oidc < the top (mod.rs, lifecycle, dispatch, tasks, conn, redirect); pages and assets
  import only the core; signin never imports account; forward_auth and
  proxy import neither signin nor account. The core's `state.rs` may name the state
  types of a room's leaf module, one that imports nothing from server/.

An edge is a `use` path or an inline `crate::`/`super::`/`self::` path
outside `#[cfg(test)]` modules, resolved to the file that defines it.
Exits 1 and names every problem found.
"""
import os
import re
import sys
from collections import defaultdict

SRC = sys.argv[1] if len(sys.argv) > 1 else 'src'

LEVEL = {'core': 0, 'pages': 0, 'assets': 0, 'guard': 1, 'factors': 2,
         'forward_auth': 3, 'signin': 3, 'proxy': 3.5, 'account': 4, 'ops': 4,
         'oidc': 5, 'top': 9}
TOP = {'lifecycle', 'dispatch', 'tasks', 'conn', 'redirect'}
FORBIDDEN = {('signin', 'account'), ('forward_auth', 'signin'),
             ('forward_auth', 'account'), ('proxy', 'signin'),
             ('proxy', 'account')}


def modules():
    mods = {}
    for d, _, fs in os.walk(SRC):
        for f in fs:
            if not f.endswith('.rs'):
                continue
            p = os.path.join(d, f)
            rel = os.path.relpath(p, SRC)[:-3].split(os.sep)
            if rel[0] in ('main', 'bin'):
                continue
            if rel[-1] == 'mod':
                rel = rel[:-1]
            if rel == ['lib']:
                rel = []
            mods[tuple(rel)] = p
    return mods


def blank(src):
    """The source with comments, strings and char literals blanked out
    (their text replaced by spaces), so that braces and paths in them are
    not read as code."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith('//', i):
            j = src.find('\n', i)
            j = n if j < 0 else j
            out.append(' ' * (j - i))
            i = j
        elif src.startswith('/*', i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith('/*', j):
                    depth, j = depth + 1, j + 2
                elif src.startswith('*/', j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r'[^\n]', ' ', src[i:j]))
            i = j
        elif (m := re.match(r'b?r(#*)"', src[i:])) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == '_')):
            end = src.find('"' + m.group(1), i + m.end())
            j = n if end < 0 else end + 1 + len(m.group(1))
            out.append('""' + re.sub(r'[^\n]', ' ', src[i + 2:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == '\\' else 1
            out.append('"' + re.sub(r'[^\n]', ' ', src[i + 1:j]) + '"')
            i = j + 1
        elif c == "'" and (m := re.match(r"'(\\.[^']*|[^\\'])'", src[i:])):
            out.append("' '" + ' ' * (m.end() - 3))
            i += m.end()
        else:
            out.append(c)
            i += 1
    return ''.join(out)


def strip(src):
    """The source without comments, literals and `#[cfg(test)]` modules."""
    src = blank(src)
    out, idx = [], 0
    pat = re.compile(r'#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{')
    while True:
        m = pat.search(src, idx)
        if not m:
            out.append(src[idx:])
            return ''.join(out)
        out.append(src[idx:m.start()])
        depth, j = 1, m.end()
        while j < len(src) and depth:
            depth += {'{': 1, '}': -1}.get(src[j], 0)
            j += 1
        idx = j


def expand(tree):
    tree = tree.strip()
    i = tree.find('{')
    if i < 0:
        return [tree.split(' as ')[0].strip()]
    prefix, inner = tree[:i], tree[i + 1:tree.rfind('}')]
    parts, depth, cur = [], 0, ''
    for ch in inner:
        if ch == ',' and depth == 0:
            parts.append(cur)
            cur = ''
            continue
        depth += {'{': 1, '}': -1}.get(ch, 0)
        cur += ch
    parts.append(cur)
    return [prefix + x for p in parts if p.strip() for x in expand(p)]


def resolve(mods, me, path):
    segs = [s for s in re.sub(r'\s+', '', path).split('::') if s]
    if not segs:
        return None
    base = list(me)
    if segs[0] == 'crate':
        base, segs = [], segs[1:]
    elif segs[0] == 'self':
        segs = segs[1:]
    elif segs[0] == 'super':
        while segs and segs[0] == 'super':
            base, segs = base[:-1], segs[1:]
    else:
        return None
    full = base + segs
    for k in range(len(full), -1, -1):
        if tuple(full[:k]) in mods:
            return tuple(full[:k])
    return None


def graph(mods):
    edges = defaultdict(set)
    for me, p in mods.items():
        src = strip(open(p).read())
        paths = [x for m in re.finditer(r'\buse\s+([^;]+);', src) for x in expand(m.group(1))]
        paths += [m.group(1) for m in re.finditer(r'\b((?:crate|super|self)(?:::\w+)+)', src)]
        for path in paths:
            t = resolve(mods, me, path)
            if t is not None and t != me and t != ():
                edges[me].add(t)
    return edges


def cycles(mods, edges):
    index, low, stack, on, found = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(comp)

    for v in mods:
        if v not in index:
            visit(v)
    return found


def room(m):
    if m[:1] != ('server',):
        return None
    if len(m) == 1 or m[1] in TOP:
        return 'top'
    return m[1] if m[1] in LEVEL else 'core'


def name(m):
    return '::'.join(m)


def main():
    mods = modules()
    edges = graph(mods)
    problems = []
    for comp in cycles(mods, edges):
        problems.append('import circle: ' + ', '.join(sorted(name(m) for m in comp)))
    for a, targets in sorted(edges.items()):
        ra = room(a)
        if ra is None:
            continue
        for b in sorted(targets):
            rb = room(b)
            if rb is None or rb == ra:
                continue
            leaf = not any(room(t) for t in edges.get(b, ()))
            if a == ('server', 'state') and leaf:
                continue
            if (ra, rb) in FORBIDDEN or LEVEL[rb] > LEVEL[ra] or (
                    LEVEL[rb] == LEVEL[ra] and LEVEL[ra] > 0):
                problems.append(f'{name(a)} ({ra}) imports {name(b)} ({rb})')
    for p in problems:
        print(p)
    if problems:
        sys.exit(1)
    print(f'imports: {len(mods)} modules, no circle, rooms in order')


main()
