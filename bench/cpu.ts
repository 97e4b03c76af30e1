/**
 * How much of the machine was busy with work that is not the benchmark's:
 * the CPU time of the whole machine (/proc/stat) less that of the benchmark's
 * own process tree (this process and every descendant: servers under test,
 * their workers, the load generator), over a measured run. A figure taken
 * while other processes kept the CPUs busy is lower than the machine can do;
 * the report says so. Linux only; elsewhere it reports nothing.
 */
import * as fs from 'node:fs';

export interface CpuSnapshot {
  at: number;
  /** busy and total jiffies of all CPUs */
  busy: number;
  total: number;
  /** utime + stime jiffies of the benchmark's process tree */
  bench: number;
  /** utime + stime jiffies of the process tree of the server under test, when one was named */
  server?: number;
  /** utime + stime jiffies of every process named `postgres` (the database server's backends and helpers) */
  postgres: number;
}

export interface CpuUse {
  /** CPUs' worth of time used by everything */
  busyCores: number;
  /** CPUs' worth of time used by the benchmark's processes */
  benchCores: number;
  /** CPUs' worth of time used by other processes on the machine */
  otherCores: number;
  /** CPU seconds used by the server under test (its process and its children) */
  serverSeconds?: number;
  /** CPU seconds used by processes named `postgres` (0 without a PostgreSQL server on this machine) */
  postgresSeconds: number;
}

const CLK_TCK = 100;

function machine(): { busy: number; total: number } | undefined {
  try {
    const line = fs.readFileSync('/proc/stat', 'latin1').split('\n')[0];
    // cpu user nice system idle iowait irq softirq steal (guest time is already in user)
    const v = line.trim().split(/\s+/).slice(1, 9).map(Number);
    const total = v.reduce((a, b) => a + b, 0);
    return { busy: total - v[3] - v[4], total };
  } catch {
    return undefined;
  }
}

/**
 * utime + stime of each root process and all its descendants, in jiffies, and
 * of every process named `postgres`, from one pass over /proc.
 */
function treeTicks(roots: number[]): { trees: number[]; postgres: number } {
  const children = new Map<number, number[]>();
  const ticks = new Map<number, number>();
  let postgres = 0;
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${name}/stat`, 'latin1');
    } catch {
      continue; // exited meanwhile
    }
    // the command name may hold spaces and parentheses: fields start after the last ')'
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const pid = Number(name);
    const ppid = Number(f[1]);
    const t = Number(f[11]) + Number(f[12]);
    ticks.set(pid, t);
    if (stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')) === 'postgres') postgres += t;
    const list = children.get(ppid);
    if (list) list.push(pid);
    else children.set(ppid, [pid]);
  }
  const trees = roots.map((root) => {
    let sum = 0;
    const stack = [root];
    while (stack.length) {
      const p = stack.pop()!;
      sum += ticks.get(p) ?? 0;
      for (const c of children.get(p) ?? []) stack.push(c);
    }
    return sum;
  });
  return { trees, postgres };
}

/** The machine's CPU counters, the benchmark's, and those of the server under test when its pid is given. */
export function cpuSnapshot(serverPid?: number): CpuSnapshot | undefined {
  const m = machine();
  if (!m) return undefined;
  const {
    trees: [bench, server],
    postgres,
  } = treeTicks(serverPid === undefined ? [process.pid] : [process.pid, serverPid]);
  return { at: performance.now(), busy: m.busy, total: m.total, bench, server, postgres };
}

/** CPU use between two snapshots; undefined when /proc is not there. */
export function cpuUse(a: CpuSnapshot | undefined, b: CpuSnapshot | undefined): CpuUse | undefined {
  if (!a || !b || b.total <= a.total) return undefined;
  const seconds = (b.at - a.at) / 1000;
  const busyCores = (b.busy - a.busy) / CLK_TCK / seconds;
  // a process that exited during the interval takes its ticks with it: never below zero
  const benchCores = Math.max(0, (b.bench - a.bench) / CLK_TCK / seconds);
  const r = (x: number) => Math.round(x * 100) / 100;
  const serverSeconds = a.server !== undefined && b.server !== undefined && b.server >= a.server ? (b.server - a.server) / CLK_TCK : undefined;
  const postgresSeconds = Math.max(0, (b.postgres - a.postgres) / CLK_TCK);
  return { busyCores: r(busyCores), benchCores: r(benchCores), otherCores: r(Math.max(0, busyCores - benchCores)), serverSeconds, postgresSeconds };
}
