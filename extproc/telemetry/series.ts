/**
 * One series of a prom-client histogram or counter, updated in place: what the per-request
 * metrics (telemetry.ts) hold once per label set.
 *
 * Why: prom-client's label children (`metric.labels(...)`) still validate the labels, hash them
 * into a key string and build a {labels, value} pair on every observe and inc: ~0.2 KiB and
 * ~1.3 µs per histogram observation, ~1 KiB per inc of a counter with ten labels, and a request
 * makes eight or more of them (a tenth of what Sluice allocated per request after the transport,
 * bench section lean with BENCH_ALLOC_PROFILE). Here the series' first value goes through
 * prom-client's own observe()/inc(), which makes the series' record; later values update that
 * record as prom-client's observe()/inc() do.
 *
 * This reads prom-client's per-series records (`hashMap`, `upperBounds`), which are not its
 * public API: series.test.ts holds the exposition of both paths equal for the pinned version.
 * Only for metrics that are never reset (a reset drops the records held here); Telemetry resets
 * none of the metrics it uses this for.
 */
import type { Counter, Histogram } from 'prom-client';

type Labels = Record<string, string>;

interface HistogramRecord {
  labels: Labels;
  sum: number;
  count: number;
  bucketValues: Record<string, number>;
}
interface CounterRecord {
  labels: Labels;
  value: number;
}
interface Internals<R> {
  hashMap: Record<string, R>;
  labelNames: string[];
}

/** The record prom-client keeps for exactly these label values. */
function recordOf<R extends { labels: Labels }>(metric: Internals<R>, labels: Labels): R {
  for (const r of Object.values(metric.hashMap)) {
    if (metric.labelNames.every((n) => r.labels[n] === labels[n])) return r;
  }
  throw new Error('prom-client kept no series for these labels');
}

/** Observes into one histogram series; `labels` names every label of the histogram. */
export function histogramSeries(h: Histogram<string>, labels: Labels): (value: number) => void {
  let record: HistogramRecord | undefined;
  const internals = h as unknown as Internals<HistogramRecord> & { upperBounds: number[] };
  const bounds = internals.upperBounds;
  const keys = bounds.map(String);
  return (value) => {
    if (record === undefined) {
      h.observe(labels, value);
      record = recordOf(internals, labels);
      return;
    }
    if (!Number.isFinite(value)) throw new TypeError(`Value is not a valid number: ${value}`);
    record.sum += value;
    record.count += 1;
    // The first bucket that holds the value (prom-client's findBound); none: only +Inf (count).
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]!) {
        record.bucketValues[keys[i]!]! += 1;
        return;
      }
    }
  };
}

/** Increments one counter series; `labels` names every label of the counter. */
export function counterSeries(c: Counter<string>, labels: Labels): (by?: number) => void {
  let record: CounterRecord | undefined;
  const internals = c as unknown as Internals<CounterRecord>;
  return (by = 1) => {
    if (record === undefined) {
      c.inc(labels, by);
      record = recordOf(internals, labels);
      return;
    }
    if (!Number.isFinite(by)) throw new TypeError(`Value is not a valid number: ${by}`);
    if (by < 0) throw new Error('It is not possible to decrease a counter');
    record.value += by;
  };
}
