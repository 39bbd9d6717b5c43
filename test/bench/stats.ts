/** Latency samples and their summaries; no I/O, so it can be unit-tested cheaply. */

/** Growable store of millisecond samples; typed so a run of 10⁶ samples stays small. */
export class Samples {
  private data = new Float64Array(4096);
  private n = 0;

  add(ms: number): void {
    if (this.n === this.data.length) {
      const bigger = new Float64Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.n++] = ms;
  }

  get count(): number {
    return this.n;
  }

  /** Percentiles by nearest rank, `ps` in [0, 100]; NaN when empty. */
  percentiles(ps: readonly number[]): number[] {
    if (this.n === 0) return ps.map(() => Number.NaN);
    const sorted = this.data.slice(0, this.n).sort();
    return ps.map((p) => sorted[rank(p, this.n)]!);
  }

  max(): number {
    let m = Number.NaN;
    for (let i = 0; i < this.n; i++) if (!(this.data[i]! <= m)) m = this.data[i]!;
    return m;
  }
}

function rank(p: number, n: number): number {
  return Math.min(n - 1, Math.max(0, Math.ceil((p / 100) * n) - 1));
}

export function fmtMs(ms: number): string {
  return Number.isFinite(ms) ? ms.toFixed(3) : '-';
}

export function fmtInt(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '-';
}

/**
 * A plain aligned table. `align` has one letter per column, `l` or `r`; by default the first
 * column is left-aligned and the others (figures) right-aligned.
 */
export function table(header: string[], rows: string[][], align?: string): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const left = (i: number): boolean => (align ? align[i] === 'l' : i === 0);
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (left(i) ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** The median (the mean of the two middle values for an even count); NaN without values. */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
