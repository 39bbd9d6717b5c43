import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { logDestination } from './log-destination.js';
import { infoLineWriter } from './access-line.js';

function withFile(fn: (fd: number, path: string) => Promise<void> | void): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-log-'));
  const path = join(dir, 'out.log');
  const fd = openSync(path, 'a');
  return Promise.resolve(fn(fd, path)).finally(() => {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  });
}

/** flushSync does not wait for an asynchronous write already under way: wait for its lines. */
async function linesOf(path: string, n: number): Promise<string[]> {
  const end = Date.now() + 10_000;
  for (;;) {
    const lines = readFileSync(path, 'utf8').trimEnd().split('\n');
    if (lines.length >= n || Date.now() > end) return lines;
    await new Promise((r) => setTimeout(r, 5));
  }
}

const line = (i: number): Record<string, unknown> => ({
  event: 'request',
  i,
  // Multi-byte UTF-8 (2, 3 and 4 bytes) and a JSON escape: each line's bytes must be kept whole.
  route: `rüte-${i}-路由-🚀-"q"`,
  pad: 'x'.repeat(i % 300),
});

test('every line reaches the descriptor once and whole, as pino wrote it', () =>
  withFile(async (fd, path) => {
    const dest = logDestination({ fd, shared: false });
    const log = pino({ base: { component: 'extproc' }, timestamp: false }, dest).child({
      log: 'access',
    });
    for (let i = 0; i < 500; i++) log.info(line(i), 'request');
    // Half asynchronously, the rest at once (as at shutdown).
    dest.flush();
    await new Promise((r) => setTimeout(r, 20));
    for (let i = 500; i < 1000; i++) log.info(line(i), 'request');
    dest.flushSync();
    const lines = await linesOf(path, 1000);
    assert.equal(lines.length, 1000);
    // (flushSync may write its lines before an asynchronous write under way lands: sonic-boom's.)
    const objects = lines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .sort((a, b) => (a.i as number) - (b.i as number));
    objects.forEach((o, i) => {
      assert.deepEqual(
        { i: o.i, route: o.route, pad: o.pad, log: o.log, msg: o.msg, component: o.component },
        {
          i,
          route: line(i).route,
          pad: line(i).pad,
          log: 'access',
          msg: 'request',
          component: 'extproc',
        },
      );
    });
  }));

test('shared (--workers): each write is whole lines of at most 4,096 bytes', () =>
  withFile(async (fd, path) => {
    const sizes: Buffer[] = [];
    const origWrite = fs.write;
    const w = mock.method(fs, 'write', (...args: unknown[]) => {
      if (Buffer.isBuffer(args[1])) sizes.push(Buffer.from(args[1]));
      return (origWrite as (...a: unknown[]) => void)(...args);
    });
    const origSync = fs.writeSync;
    const ws = mock.method(fs, 'writeSync', (...args: unknown[]) => {
      if (Buffer.isBuffer(args[1])) sizes.push(Buffer.from(args[1]));
      return (origSync as (...a: unknown[]) => number)(...args);
    });
    try {
      const dest = logDestination({ fd, shared: true });
      const log = pino({ timestamp: false }, dest);
      for (let i = 0; i < 400; i++) {
        log.info(line(i), 'request');
        if (i % 50 === 0) await new Promise((r) => setImmediate(r));
      }
      dest.flushSync();
    } finally {
      w.mock.restore();
      ws.mock.restore();
    }
    assert.ok(sizes.length > 10, `${sizes.length} writes`);
    for (const b of sizes) {
      assert.ok(b.length <= 4096, `a write of ${b.length} bytes`);
      assert.equal(b[b.length - 1], 0x0a, 'a write ends with a whole line');
    }
    const lines = await linesOf(path, 400);
    assert.equal(lines.length, 400);
    const seen = lines.map((l) => (JSON.parse(l) as { i: number }).i).sort((a, b) => a - b);
    assert.deepEqual(
      seen,
      Array.from({ length: 400 }, (_, i) => i),
    );
  }));

test('an access line written in parts reaches the descriptor as info() would write it', () =>
  withFile(async (fd, path) => {
    const dest = logDestination({ fd, shared: false });
    const log = pino({ base: { component: 'extproc' }, timestamp: false }, dest).child({
      log: 'access',
    });
    const write = infoLineWriter(log);
    for (let i = 0; i < 300; i++) {
      write(line(i), 'request');
      log.info(line(i), 'request');
    }
    write({}, 'empty');
    log.info({}, 'empty');
    dest.flushSync();
    // Sorted: flushSync may land before an asynchronous write under way (see above).
    const lines = (await linesOf(path, 602)).sort();
    assert.equal(lines.length, 602);
    for (let i = 0; i < lines.length; i += 2) assert.equal(lines[i], lines[i + 1]);
  }));

test('alone on the descriptor: lines go out in writes of at least 32 KiB, not one per few lines', () =>
  withFile(async (fd, path) => {
    const sizes: number[] = [];
    const origWrite = fs.write;
    const w = mock.method(fs, 'write', (...args: unknown[]) => {
      if (Buffer.isBuffer(args[1])) sizes.push(args[1].length);
      return (origWrite as (...a: unknown[]) => void)(...args);
    });
    try {
      const dest = logDestination({ fd, shared: false });
      const log = pino({ timestamp: false }, dest);
      // ~600-byte lines, as the access log writes them, with the event loop turning between.
      for (let i = 0; i < 1000; i++) {
        log.info({ ...line(i), pad: 'x'.repeat(500) }, 'request');
        if (i % 10 === 0) await new Promise((r) => setImmediate(r));
      }
      dest.flushSync();
    } finally {
      w.mock.restore();
    }
    const lines = await linesOf(path, 1000);
    assert.equal(lines.length, 1000);
    // ~600 KB in asynchronous writes of 32 KiB or more (the last ones may be smaller).
    assert.ok(sizes.length > 0 && sizes.length <= 25, `${sizes.length} writes`);
    assert.ok(
      sizes.slice(0, -2).every((n) => n >= 32 * 1024),
      `write sizes ${sizes.join(', ')}`,
    );
  }));
