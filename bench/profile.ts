/**
 * Summary of a V8 CPU profile (node --cpu-prof): self time by function and by
 * where the code lives (a file of src/, a package of node_modules, node
 * internals, GC, idle), and inclusive time of the hsmca functions.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileEntry {
  name: string;
  ms: number;
  /** share of the busy (non-idle) time, in percent */
  pct: number;
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  idleMs: number;
  busyMs: number;
  /** self time by function */
  topSelf: ProfileEntry[];
  /** self time by location: src/<file>, node_modules/<package>, node internals, (garbage collector) ... */
  byLocation: ProfileEntry[];
  /** inclusive time (self plus callees) of functions in dist/src */
  topInclusiveSrc: ProfileEntry[];
}

function location(url: string, fn: string): string {
  if (!url) return fn.startsWith('(') ? fn : '(native)';
  const u = url.replace(/^file:\/\//, '');
  const nm = u.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = u.slice(nm + '/node_modules/'.length).split('/');
    return `node_modules/${rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]}`;
  }
  const d = u.indexOf('/dist/');
  if (d >= 0) return u.slice(d + '/dist/'.length).replace(/\.js$/, '.ts');
  if (u.startsWith('node:')) return `node:${u.slice(5).split('/')[0]}`;
  return path.basename(u);
}

function label(f: CallFrame): string {
  const loc = location(f.url, f.functionName);
  return `${f.functionName || '(anonymous)'} ${loc}${f.url ? `:${f.lineNumber + 1}` : ''}`;
}

const top = (m: Map<string, number>, busy: number, n: number): ProfileEntry[] =>
  [...m.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([name, us]) => ({ name, ms: Math.round(us / 100) / 10, pct: Math.round((us / busy) * 1000) / 10 }));

export function summarizeProfile(file: string, n = 15): ProfileSummary {
  const p = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>(p.nodes.map((x) => [x.id, x]));
  const parent = new Map<number, number>();
  for (const x of p.nodes) for (const c of x.children ?? []) parent.set(c, x.id);
  const selfUs = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) selfUs.set(p.samples[i], (selfUs.get(p.samples[i]) ?? 0) + (p.timeDeltas[i] ?? 0));

  const byFn = new Map<string, number>();
  const byLoc = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let idle = 0;
  let total = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id)!;
    const f = node.callFrame;
    total += us;
    if (f.functionName === '(idle)') {
      idle += us;
      continue;
    }
    const name = label(f);
    byFn.set(name, (byFn.get(name) ?? 0) + us);
    const loc = location(f.url, f.functionName);
    byLoc.set(loc, (byLoc.get(loc) ?? 0) + us);
    // inclusive: credit each distinct src function on the stack once
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const cf = byId.get(cur)!.callFrame;
      if (!cf.url.includes('/dist/src/')) continue;
      const l = label(cf);
      if (seen.has(l)) continue;
      seen.add(l);
      inclusive.set(l, (inclusive.get(l) ?? 0) + us);
    }
  }
  const busy = Math.max(1, total - idle);
  return {
    file,
    totalMs: Math.round(total / 1000),
    idleMs: Math.round(idle / 1000),
    busyMs: Math.round(busy / 1000),
    topSelf: top(byFn, busy, n),
    byLocation: top(byLoc, busy, n),
    topInclusiveSrc: top(inclusive, busy, n),
  };
}

export function printProfile(title: string, s: ProfileSummary, write: (line: string) => void): void {
  write(`${title}: ${s.busyMs} ms busy of ${s.totalMs} ms on the main thread (${s.idleMs} ms idle) — ${s.file}`);
  const block = (h: string, es: ProfileEntry[]) => {
    write(`  ${h}`);
    for (const e of es) write(`    ${e.pct.toFixed(1).padStart(5)}%  ${String(e.ms).padStart(8)} ms  ${e.name}`);
  };
  block('self time by location', s.byLocation);
  block('self time by function', s.topSelf);
  block('inclusive time of hsmca functions', s.topInclusiveSrc);
}
