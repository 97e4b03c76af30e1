/** Small statistics helpers shared by the benchmark modules. */

/** A figure measured over several runs: the median and the spread. */
export interface Summary {
  median: number;
  min: number;
  max: number;
  /** every run, in the order taken */
  values: number[];
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function summarize(xs: readonly number[]): Summary {
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs), values: [...xs] };
}

/** Nearest-rank percentile (p in 0..100) of values sorted ascending. */
export function percentileSorted(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/** Rounds to a number of significant digits that suits a table (3 for small values, whole numbers for large). */
export function round(x: number): number {
  if (!Number.isFinite(x)) return x;
  const a = Math.abs(x);
  if (a >= 100) return Math.round(x);
  if (a >= 10) return Math.round(x * 10) / 10;
  if (a >= 1) return Math.round(x * 100) / 100;
  return Math.round(x * 1000) / 1000;
}

/** "1234 [1200–1260]", or just "1234" for a single run. */
export function fmt(s: Summary | undefined, unit = ''): string {
  if (!s) return '—';
  const u = unit ? ` ${unit}` : '';
  if (s.values.length <= 1 || s.min === s.max) return `${round(s.median)}${u}`;
  return `${round(s.median)} [${round(s.min)}–${round(s.max)}]${u}`;
}

/** a / b as "1.23x", or "—" when either is missing. */
export function ratio(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return undefined;
  return Math.round((a / b) * 100) / 100;
}

export function fmtRatio(r: number | undefined): string {
  return r === undefined ? '—' : `${r.toFixed(2)}x`;
}
