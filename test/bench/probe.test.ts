// The bench probe (probe.ts) in a real process: a window's collections are the window's own; the
// probe's forced full collection (GET /gc, run between the lean section's points) is counted apart
// and is never a window's collection or pause, whenever it runs.
//   node --import tsx --test test/bench/probe.test.ts
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { markProbe, probeGc, probeGet, runtimeFigures } from './probe-client.js';
import { hotSpots } from './profile-top.js';

const PROBE = fileURLToPath(new URL('./probe.ts', import.meta.url));

let dir: string;
let sock: string;
let child: ChildProcess;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-probe-'));
  sock = join(dir, 'probe.sock');
  // A server stand-in that allocates (young garbage, and a little that lives) until stopped.
  const script =
    'let keep = []; setInterval(() => { for (let i = 0; i < 20000; i++) keep.push({ i, s: "x" + i });' +
    ' if (keep.length > 200000) keep = []; }, 5);';
  child = spawn(process.execPath, ['--import', 'tsx', '--import', PROBE, '-e', script], {
    env: { ...process.env, BENCH_PROBE_SOCKET: sock },
    stdio: 'ignore',
  });
  const end = Date.now() + 20_000;
  while (!existsSync(sock)) {
    assert.ok(Date.now() < end, 'the probe socket did not appear');
    await new Promise((r) => setTimeout(r, 50));
  }
});

after(() => {
  child?.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

void describe('bench probe', () => {
  it("counts a window's own collections, never the probe's forced one", async () => {
    const begin = await markProbe(sock);
    await new Promise((r) => setTimeout(r, 300));
    const gc = await probeGc(sock);
    assert.ok(gc.heapUsed > 0);
    await new Promise((r) => setTimeout(r, 300));
    const end = await markProbe(sock);
    const rt = runtimeFigures(begin, end, 1);
    // The stand-in allocates tens of MiB in the window: young collections ran.
    assert.ok(rt.scavenges > 0, `scavenges ${rt.scavenges}`);
    // At least the one asked for: V8 sometimes runs a second collection within gc()'s call (a young
    // one on the way; 2 seen in CI), counted apart as forced too, as the test below allows.
    assert.ok(rt.forced >= 1, `forced ${rt.forced}`);
    // The forced full collection is in no count, no event and no pause of the window.
    assert.equal(
      rt.events.filter((e) => e.kind === 'MarkSweepCompact').length,
      rt.marks,
      JSON.stringify(rt.events),
    );
    assert.equal(rt.events.length, rt.scavenges + rt.marks + (end.gc.other - begin.gc.other));
    const longest = Math.max(0, ...rt.events.map((e) => e.pauseMs));
    assert.equal(rt.maxPauseMs, longest);
    // Allocation still counts what the forced collection freed (the heap did not grow by it).
    assert.ok(rt.allocKiBPerReq > 1024, `allocated ${rt.allocKiBPerReq} KiB`);
  });

  it('a window with a forced collection has no mark-compact unless V8 ran one itself', async () => {
    // Many forced collections in one window: none of them counts.
    const begin = await markProbe(sock);
    for (let i = 0; i < 5; i++) await probeGc(sock);
    const end = await markProbe(sock);
    const rt = runtimeFigures(begin, end, 1);
    // Every collection run inside a forced one's call is counted apart: at least one per call
    // (V8 sometimes runs a second with it, e.g. a young collection on the way: 6 seen for 5).
    assert.ok(rt.forced >= 5, `forced ${rt.forced}`);
    assert.ok(rt.marks <= 1, `mark-compacts ${rt.marks}: the forced ones were counted`);
  });

  it("profiles a window's CPU (BENCH_CPU_PROFILE): the stand-in's own function is among the hot spots", async () => {
    const file = join(dir, 'window.cpuprofile');
    await probeGet(sock, '/cpu/start');
    await new Promise((r) => setTimeout(r, 400));
    await probeGet(sock, `/cpu/stop?file=${encodeURIComponent(file)}`);
    const profile = JSON.parse(readFileSync(file, 'utf8')) as { samples: number[] };
    // 200-µs samples over 400 ms.
    assert.ok(profile.samples.length > 100, `${profile.samples.length} samples`);
    const spots = hotSpots(file, process.cwd(), 50);
    assert.ok(spots.length > 0);
    // The stand-in's interval callback (`-e` code) is where its time goes, beside its collections.
    assert.ok(
      spots.some((h) => h.where === '[eval]:1' && h.share > 0.05),
      JSON.stringify(spots.slice(0, 8)),
    );
    // A second window can be profiled once the first one is written.
    await probeGet(sock, '/cpu/start');
    await probeGet(sock, `/cpu/stop?file=${encodeURIComponent(file)}`);
  });

  it('runs the CPU and allocation profilers over one window together (both BENCH_*_PROFILE set)', async () => {
    const cpu = join(dir, 'both.cpuprofile');
    const alloc = join(dir, 'both.heapprofile');
    await probeGet(sock, '/alloc/start');
    await probeGet(sock, '/cpu/start');
    await new Promise((r) => setTimeout(r, 200));
    // In the order the lean section stops them: the allocation profile first.
    await probeGet(sock, `/alloc/stop?file=${encodeURIComponent(alloc)}`);
    await probeGet(sock, `/cpu/stop?file=${encodeURIComponent(cpu)}`);
    const c = JSON.parse(readFileSync(cpu, 'utf8')) as { samples: number[] };
    assert.ok(c.samples.length > 50, `${c.samples.length} samples`);
    const a = JSON.parse(readFileSync(alloc, 'utf8')) as { head: { children: unknown[] } };
    assert.ok(a.head.children.length > 0);
  });
});
