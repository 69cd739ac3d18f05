#!/usr/bin/env python3
"""Structure gate for cabi/src and embedded-cp/src (CI runs it): in each
crate, no import cycle among its modules (each `crate::`/`super::`/`self::` path counts as an edge
from the file's module to the module it names; a parent and its own
children are not a cycle), nothing in `rt` importing a module outside
`rt`, and no production file over 350 lines (test-only files, marked
`#![cfg(test)]`, are exempt). Prints what it finds; exits 1 on a breach."""
import os, re, sys

def check(crate):
  files={}
  root=os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', crate, 'src')
  mods={}
  for dp,dn,fn in os.walk(root):
      for f in fn:
          if not f.endswith('.rs'): continue
          p=os.path.relpath(os.path.join(dp,f), root)
          parts=p[:-3].split('/')
          if parts[-1] in ('mod','lib'): parts=parts[:-1]
          name='::'.join(parts) or 'crate'
          mods[name]=open(os.path.join(root,p)).read()
          files[name]=p
  def resolve(cur, path):
      segs=path.split('::')
      base=cur.split('::') if cur!='crate' else []
      if segs[0]=='crate': out=[]; segs=segs[1:]
      elif segs[0]=='super':
          out=base[:]
          while segs and segs[0]=='super':
              out=out[:-1]; segs=segs[1:]
      elif segs[0]=='self': out=base[:]; segs=segs[1:]
      else: return None
      # longest known module prefix
      full=out+segs
      for k in range(len(full),0,-1):
          n='::'.join(full[:k])
          if n in mods: return n
      return None
  edges=set()
  for m,src in mods.items():
      src=re.sub(r'#\[cfg\(test\)\]\s*mod tests \{.*', '', src, flags=re.S)
      for path in re.findall(r'\b((?:crate|super|self)(?:::\w+)+)', src):
          t=resolve(m,path)
          if t and t!=m and not t.startswith(m+'::') and not m.startswith(t+'::'):
              edges.add((m,t))
  # collapse to granularity: top-level modules and rt children
  def g(n):
      p=n.split('::')
      return '::'.join(p[:2]) if p[0]=='rt' else p[0]
  graph={}
  for a,b in edges:
      a2,b2=g(a),g(b)
      if a2!=b2: graph.setdefault(a2,set()).add(b2)
  # also within worker/client submodules
  graph2={}
  for a,b in edges:
      graph2.setdefault(a,set()).add(b)
  def cycles(graph):
      sys.setrecursionlimit(10000)
      index={};low={};st=[];on=set();res=[];c=[0]
      def sc(v):
          index[v]=low[v]=c[0];c[0]+=1;st.append(v);on.add(v)
          for w in graph.get(v,()):
              if w not in index: sc(w); low[v]=min(low[v],low[w])
              elif w in on: low[v]=min(low[v],index[w])
          if low[v]==index[v]:
              comp=[]
              while True:
                  w=st.pop();on.discard(w);comp.append(w)
                  if w==v:break
              if len(comp)>1: res.append(comp)
      for v in list(graph):
          if v not in index: sc(v)
      return res

  module_cycles=cycles(graph); file_cycles=cycles(graph2)
  rt_out=sorted({(a,b) for a,b in edges if a.startswith('rt') and not b.startswith('rt')})
  long=sorted((files[m], src.count('\n')) for m,src in mods.items()
              if src.count('\n') > 350 and '#![cfg(test)]' not in src)
  print(f"{crate}: modules: {len(mods)}; import cycles: {module_cycles or file_cycles or 'none'}; "
        f"rt importing outside rt: {rt_out or 'none'}; files over 350 lines: {long or 'none'}")
  return bool(module_cycles or file_cycles or rt_out or long)

breached=[check(c) for c in ('cabi', 'embedded-cp')]
sys.exit(1 if any(breached) else 0)
