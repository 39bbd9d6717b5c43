import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Counter, Histogram, Registry } from 'prom-client';
import { counterSeries, histogramSeries } from './series.js';

function metrics(registry: Registry) {
  return {
    h: new Histogram({
      name: 'h_seconds',
      help: 'h',
      labelNames: ['filter', 'phase'],
      buckets: [0.001, 0.01, 0.1],
      registers: [registry],
    }),
    c: new Counter({
      name: 'c_total',
      help: 'c',
      labelNames: ['a', 'b'],
      registers: [registry],
    }),
  };
}

const observations: [string, string, number][] = [
  ['router', 'request_headers', 0.0005],
  ['router', 'request_headers', 0.001], // on a bound: that bucket
  ['router', 'request_body', 0.05],
  ['router', 'request_headers', 7], // past every bound: +Inf only
  ['upstream', 'request_headers', 0],
  ['router', 'request_body', 0.01],
  ['router', 'request_headers', 0.002],
];
const increments: [string, string, number][] = [
  ['x', 'y', 1],
  ['x', 'y', 1],
  ['x', 'z', 2.5],
  ['x', 'y', 0],
  ['x', 'z', 1],
];

test("a series updated in place exposes exactly what prom-client's own observe and inc do", async () => {
  const viaApi = new Registry();
  const api = metrics(viaApi);
  for (const [filter, phase, v] of observations) api.h.observe({ filter, phase }, v);
  for (const [a, b, n] of increments) api.c.inc({ a, b }, n);

  const viaSeries = new Registry();
  const ours = metrics(viaSeries);
  const hs = new Map<string, (v: number) => void>();
  for (const [filter, phase, v] of observations) {
    const key = `${filter}/${phase}`;
    if (!hs.has(key)) hs.set(key, histogramSeries(ours.h, { filter, phase }));
    hs.get(key)!(v);
  }
  const cs = new Map<string, (n?: number) => void>();
  for (const [a, b, n] of increments) {
    if (!cs.has(a + b)) cs.set(a + b, counterSeries(ours.c, { a, b }));
    cs.get(a + b)!(n);
  }
  assert.equal(await viaSeries.metrics(), await viaApi.metrics());
  assert.deepEqual(await viaSeries.getMetricsAsJSON(), await viaApi.getMetricsAsJSON());
});

test('a series shares its record with the API path for the same labels', async () => {
  const r = new Registry();
  const { h, c } = metrics(r);
  h.observe({ filter: 'router', phase: 'p' }, 0.5);
  c.inc({ a: '1', b: '2' });
  const observe = histogramSeries(h, { filter: 'router', phase: 'p' });
  observe(0.5);
  observe(0.0001);
  const inc = counterSeries(c, { a: '1', b: '2' });
  inc();
  inc(2);
  const text = await r.metrics();
  assert.match(text, /h_seconds_count\{filter="router",phase="p"\} 3/);
  assert.match(text, /h_seconds_bucket\{le="0.001",filter="router",phase="p"\} 1/);
  assert.match(text, /c_total\{a="1",b="2"\} 4/);
});

test('refuses what prom-client refuses', () => {
  const { h, c } = metrics(new Registry());
  const observe = histogramSeries(h, { filter: 'f', phase: 'p' });
  const inc = counterSeries(c, { a: '1', b: '2' });
  observe(1);
  inc();
  assert.throws(() => observe(Number.NaN), TypeError);
  assert.throws(() => inc(-1), /decrease/);
  assert.throws(() => inc(Number.POSITIVE_INFINITY), TypeError);
});
