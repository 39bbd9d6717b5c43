/**
 * What the memory store's "settled" markers hold over a long run (issue 16's RSS target), which a
 * seconds-long bench never shows: every settlement leaves one for 2 × the reservation TTL (30 min
 * by default). The MemoryStore is driven directly with a simulated clock at each rate, one fresh
 * process per rate: every simulated second `rate` reservations under the Budget's own ids
 * (reservationId), each settled after a simulated request time (0.2–20 s, a few up to 5 min),
 * until the markers are at steady state (the marker TTL plus the longest request, plus 5 min).
 * Printed per rate: markers held, the bytes they cost (V8 heap + array buffers over the empty
 * store, after a full GC, per marker), RSS over the start, the peak RSS, and the slowest reserve
 * and settle calls (a reserve runs the store's once-a-second sweep; a call's time includes any
 * garbage collection it triggered, so a stall of either kind shows up here), and the CPU time per
 * reserve + settle pair (the simulation's own work included). RSS is also given as what closing
 * the store gives back after a full GC: the simulation's own garbage grows the heap as well. A
 * slow call is also counted apart when no garbage collection overlapped it: then it is the
 * store's own work (a sweep, a rehash) or the machine taking the core away.
 *
 *   node --import tsx test/bench/markers.ts            rates 500 and 2000
 *   MARKERS_RATES=500,2000   simulated requests per second
 *   MARKERS_TTL_S=900        the policy's reservationTtlSeconds (markers live twice as long)
 *   MARKERS_IDS=budget       budget: reservationId(); uuid: randomUUID() (an id not the Budget's)
 *   MARKERS_SCOPES=1         policies the requests go to in turn (each has its own markers)
 *   MARKERS_ISSUERS=0        with N > 0, ids of N other issuers in turn (IdIssuer, as the workers
 *                            of `--workers N` make them for the primary's store), not this process's
 *
 * Wall time is a few seconds per 500 req/s; the figures are memory and call times, not speed.
 */
import { fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { performance, PerformanceObserver } from 'node:perf_hooks';
import { reservationId } from '../../extproc/governance/budget.js';
import { IdIssuer } from '../../extproc/state/issued-ids.js';
import { MemoryStore } from '../../extproc/state/memory.js';

const MiB = 1024 * 1024;

interface Result {
  rate: number;
  ids: string;
  issuers: number;
  scopes: number;
  simulatedS: number;
  markers: number;
  bytesPerMarker: number;
  heapMiB: number;
  arrayBuffersMiB: number;
  rssMiB: number;
  peakRssMiB: number;
  /** RSS given back when the store is closed (its markers freed), after a full GC. */
  storeRssMiB: number;
  /** The slowest call during which no garbage collection ran, and how many such took > 1 ms. */
  worstNoGcMs: number;
  /** The reserve that runs the sweep (once a simulated second): median, p99, max (ms). */
  sweepMs: [number, number, number];
  noGcOver1ms: number;
  cpuUsPerRequest: number;
  worstReserveMs: number;
  worstSettleMs: number;
  callsOver1ms: number;
  calls: number;
  wallS: number;
}

function quantiles(xs: number[]): [number, number, number] {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number): number => s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
  return [q(0.5), q(0.99), s[s.length - 1]!];
}

function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (!g) throw new Error('run with --expose-gc (the parent passes it to each child)');
  g();
  g();
}

/** One rate, in this process. */
async function run(rate: number): Promise<Result> {
  const ttlS = Number(process.env.MARKERS_TTL_S ?? 900);
  const idKind = process.env.MARKERS_IDS ?? 'budget';
  const issuers = Array.from(
    { length: Number(process.env.MARKERS_ISSUERS ?? 0) },
    () => new IdIssuer(),
  );
  let turn = 0;
  const newId =
    idKind === 'uuid'
      ? randomUUID
      : issuers.length > 0
        ? () => issuers[turn++ % issuers.length]!.issue()
        : reservationId;
  const markerTtlMs = 2 * ttlS * 1000;
  const store = new MemoryStore();
  const T0 = Date.UTC(2026, 11, 7);
  const scopes = Array.from(
    { length: Number(process.env.MARKERS_SCOPES ?? 1) },
    (_, i) => `policy-${i}`,
  );
  const bucket = { key: 'tpm', limit: 1e15, amount: 100, expireAtMs: 0 };
  // A few ids are made and settled before measuring, so the scopes and their tables exist.
  for (let i = 0; i < 100 * scopes.length; i++) {
    const id = newId();
    const scope = scopes[i % scopes.length]!;
    await store.reserve({ scope, id, nowMs: T0, ttlMs: ttlS * 1000, buckets: [] });
    await store.settle({ scope, id, nowMs: T0, markerTtlMs, buckets: [], usage: [] });
  }
  gc();
  const base = process.memoryUsage();
  let peakRss = base.rss;

  // Settlements due, by simulated second (request times up to 300 s).
  const LONGEST_S = 300;
  const due: [scope: string, id: string][][] = Array.from({ length: LONGEST_S + 1 }, () => []);
  let seed = 12345;
  const rand = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const simulatedS = Math.ceil(markerTtlMs / 1000) + LONGEST_S + 300;
  const gcs: number[] = [];
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcs.push(e.startTime, e.startTime + e.duration);
  });
  observer.observe({ entryTypes: ['gc'] });
  /** Calls over 1 ms: start, end. */
  const slow: number[] = [];
  let worstReserve = 0;
  const sweeps: number[] = [];
  let worstSettle = 0;
  let over1 = 0;
  let calls = 0;
  const wall0 = performance.now();
  const cpu0 = process.cpuUsage();
  for (let sec = 0; sec < simulatedS; sec++) {
    const settleNow = due[sec % due.length]!;
    due[sec % due.length] = [];
    for (let i = 0; i < rate; i++) {
      const nowMs = T0 + sec * 1000 + Math.floor((i * 1000) / rate);
      const id = newId();
      const scope = scopes[i % scopes.length]!;
      bucket.expireAtMs = nowMs + 120_000;
      let t = performance.now();
      await store.reserve({ scope, id, nowMs, ttlMs: ttlS * 1000, buckets: [bucket] });
      let d = performance.now() - t;
      // The first reserve of a simulated second runs the store's sweep.
      if (i === 0) sweeps.push(d);
      if (d > worstReserve) worstReserve = d;
      if (d > 1) {
        over1++;
        slow.push(t, t + d);
      }
      calls++;
      // 0.2–20 s, and one in 200 up to 5 min (a long stream).
      const r = rand();
      const lenS = r < 0.005 ? 20 + Math.floor(rand() * (LONGEST_S - 20)) : Math.ceil(r * 20);
      due[(sec + lenS) % due.length]!.push([scope, id]);
      if (i < settleNow.length) {
        const [sscope, sid] = settleNow[i]!;
        t = performance.now();
        await store.settle({
          scope: sscope,
          id: sid,
          nowMs,
          markerTtlMs,
          buckets: [{ key: 'tpm', actual: 90, expireAtMs: nowMs + 120_000 }],
          usage: [],
        });
        d = performance.now() - t;
        if (d > worstSettle) worstSettle = d;
        if (d > 1) {
          over1++;
          slow.push(t, t + d);
        }
        calls++;
      }
    }
    for (let i = rate; i < settleNow.length; i++) {
      const nowMs = T0 + sec * 1000 + 999;
      const t = performance.now();
      const [sscope, sid] = settleNow[i]!;
      await store.settle({ scope: sscope, id: sid, nowMs, markerTtlMs, buckets: [], usage: [] });
      const d = performance.now() - t;
      if (d > worstSettle) worstSettle = d;
      if (d > 1) {
        over1++;
        slow.push(t, t + d);
      }
      calls++;
    }
    if (sec % 30 === 0) peakRss = Math.max(peakRss, process.memoryUsage().rss);
  }
  const wallS = (performance.now() - wall0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  // The requests still running end now, so no reservation is left pending in the figures.
  const endMs = T0 + simulatedS * 1000;
  for (const ids of due) {
    for (const [s, id] of ids)
      await store.settle({ scope: s, id, nowMs: endMs, markerTtlMs, buckets: [], usage: [] });
  }
  due.length = 0;
  gc();
  const end = process.memoryUsage();
  peakRss = Math.max(peakRss, end.rss);
  const markers = store.settledMarkers;
  await store.close();
  gc();
  const closed = process.memoryUsage();
  // GC entries reach the observer on a timer, not while the loop runs on resolved promises.
  await new Promise((r) => setTimeout(r, 100));
  observer.disconnect();
  let worstNoGc = 0;
  let noGc = 0;
  for (let i = 0; i < slow.length; i += 2) {
    let gcIn = false;
    for (let j = 0; j < gcs.length && !gcIn; j += 2)
      gcIn = gcs[j]! < slow[i + 1]! && gcs[j + 1]! > slow[i]!;
    if (gcIn) continue;
    noGc++;
    worstNoGc = Math.max(worstNoGc, slow[i + 1]! - slow[i]!);
  }
  const held = end.heapUsed - base.heapUsed + (end.arrayBuffers - base.arrayBuffers);
  return {
    rate,
    ids: idKind,
    issuers: issuers.length,
    scopes: scopes.length,
    simulatedS,
    markers,
    bytesPerMarker: held / markers,
    heapMiB: (end.heapUsed - base.heapUsed) / MiB,
    arrayBuffersMiB: (end.arrayBuffers - base.arrayBuffers) / MiB,
    rssMiB: (end.rss - base.rss) / MiB,
    peakRssMiB: (peakRss - base.rss) / MiB,
    storeRssMiB: (end.rss - closed.rss) / MiB,
    worstNoGcMs: worstNoGc,
    sweepMs: quantiles(sweeps),
    noGcOver1ms: noGc,
    cpuUsPerRequest: (cpu.user + cpu.system) / (simulatedS * rate),
    worstReserveMs: worstReserve,
    worstSettleMs: worstSettle,
    callsOver1ms: over1,
    calls,
    wallS,
  };
}

async function main(): Promise<void> {
  const child = process.env.MARKERS_CHILD;
  if (child) {
    const r = await run(Number(child));
    process.send!(r);
    return;
  }
  const rates = (process.env.MARKERS_RATES ?? '500,2000').split(',').map(Number);
  const load = (await import('node:os')).loadavg().map((x) => x.toFixed(2));
  console.log(`settled markers, memory store, simulated clock (load average ${load.join(' ')})`);
  for (const rate of rates) {
    const r = await new Promise<Result>((resolve, reject) => {
      const c = fork(fileURLToPath(import.meta.url), [], {
        env: { ...process.env, MARKERS_CHILD: String(rate) },
        execArgv: [...process.execArgv, '--expose-gc'],
      });
      c.once('message', (m) => resolve(m as Result));
      c.once('exit', (code) => {
        if (code !== 0) reject(new Error(`rate ${rate}: child exited ${code}`));
      });
    });
    console.log(
      `${r.rate} req/s (${r.ids} ids${r.issuers > 0 ? ` of ${r.issuers} issuers` : ''}, ${r.scopes} policies, ${r.simulatedS} s simulated in ` +
        `${r.wallS.toFixed(1)} s): ` +
        `${r.markers.toLocaleString('en')} markers, ${r.bytesPerMarker.toFixed(1)} B each ` +
        `(heap +${r.heapMiB.toFixed(1)} MiB, array buffers +${r.arrayBuffersMiB.toFixed(1)} MiB); ` +
        `RSS +${r.rssMiB.toFixed(1)} MiB (peak +${r.peakRssMiB.toFixed(1)}), ` +
        `${r.storeRssMiB.toFixed(1)} MiB of it given back by closing the store; ` +
        `${r.cpuUsPerRequest.toFixed(2)} µs CPU per reserve + settle; ` +
        `slowest reserve ${r.worstReserveMs.toFixed(2)} ms, settle ${r.worstSettleMs.toFixed(2)} ms, ` +
        `${r.callsOver1ms} of ${r.calls.toLocaleString('en')} calls over 1 ms; ` +
        `without a GC in them: ${r.noGcOver1ms} over 1 ms, slowest ${r.worstNoGcMs.toFixed(2)} ms; ` +
        `the reserve that sweeps: ${r.sweepMs.map((x) => x.toFixed(3)).join(' / ')} ms (p50 / p99 / max)`,
    );
  }
}

await main();
