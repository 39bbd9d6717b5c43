// `sluice usage --html` rendered by a real browser: a month of usage (three teams, ten consumers,
// four models over 20 days) written by the command, opened by headless Chromium (Debian's
// package; setup.mjs installs it), screenshotted, and the PNG read back: every series colour of
// the charts is painted, "other" too, so the page draws its bars without any external asset.
// SLUICE_REPORT_SCREENSHOT=path keeps the PNG for a person to look at.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inflateSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { MemoryStore } from '../../extproc/state/memory.js';
import { emptyUsage, type UsageIncrement } from '../../extproc/state/store.js';
import { OTHER_COLOUR, PALETTE } from '../../operator/usage/html.js';
import { main } from '../../operator/usage/main.js';

const CHROMIUM = process.env['SLUICE_CHROMIUM'] ?? 'chromium';
const NOW = Date.parse('2026-03-20T18:00:00Z');

/** An 8-bit, non-interlaced RGB or RGBA PNG as RGBA pixels (what Chromium writes). */
function decodePng(buf: Buffer): { width: number; height: number; rgba: Uint8Array } {
  assert.equal(buf.subarray(0, 8).toString('hex'), '89504e470d0a1a0a', 'not a PNG');
  let off = 8;
  let width = 0;
  let height = 0;
  let channels = 0;
  const idat: Buffer[] = [];
  while (off < buf.length) {
    const len = buf.readUInt32BE(off);
    const type = buf.toString('latin1', off + 4, off + 8);
    const data = buf.subarray(off + 8, off + 8 + len);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      assert.equal(data[8], 8, 'bit depth');
      assert.equal(data[12], 0, 'interlace');
      channels = data[9] === 6 ? 4 : data[9] === 2 ? 3 : 0;
      assert.ok(channels > 0, `colour type ${data[9]}`);
    } else if (type === 'IDAT') idat.push(data);
    off += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const prev = new Uint8Array(stride);
  const rgba = new Uint8Array(width * height * 4);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)]!;
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const cur = new Uint8Array(stride);
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? cur[i - channels]! : 0;
      const b = prev[i]!;
      const c = i >= channels ? prev[i - channels]! : 0;
      const x = line[i]!;
      let v: number;
      if (filter === 0) v = x;
      else if (filter === 1) v = x + a;
      else if (filter === 2) v = x + b;
      else if (filter === 3) v = x + ((a + b) >> 1);
      else {
        const p = a + b - c;
        const pa = Math.abs(p - a);
        const pb = Math.abs(p - b);
        const pc = Math.abs(p - c);
        v = x + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
      }
      cur[i] = v & 0xff;
    }
    for (let px = 0; px < width; px++) {
      for (let k = 0; k < 3; k++) rgba[(y * width + px) * 4 + k] = cur[px * channels + k]!;
      rgba[(y * width + px) * 4 + 3] = channels === 4 ? cur[px * channels + 3]! : 255;
    }
    prev.set(cur);
  }
  return { width, height, rgba };
}

describe('report: sluice usage --html in headless Chromium', () => {
  let dir: string;
  let html: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-report-'));
    const store = new MemoryStore();
    const usage: UsageIncrement[] = [];
    const teams = ['research', 'support', 'platform'];
    const models = ['gpt-4o', 'gpt-4o-mini', 'claude-sonnet', 'llama-3-70b'];
    for (let day = 1; day <= 20; day++) {
      for (let c = 0; c < 10; c++) {
        const tokens = 1000 * (c + 1) + day * 37;
        usage.push({
          period: 'day',
          periodKey: `2026-03-${String(day).padStart(2, '0')}`,
          dims: {
            consumer: `svc-${c}`,
            team: teams[c % 3]!,
            model: models[(c + day) % 4]!,
            route: 'ns/chat',
          },
          values: {
            ...emptyUsage(),
            requests: 3 + c,
            inputTokens: Math.round(tokens * 0.8),
            outputTokens: Math.round(tokens * 0.2),
            totalTokens: tokens,
            costMicros: tokens * (c + 2) * 3,
            // Refusals: svc-0 over its budget every day, svc-1 rate limited every other day.
            ...(c === 0 && { refusedBudget: 2 }),
            ...(c === 1 && day % 2 === 0 && { refusedRateLimit: 1 }),
          },
          expireAtMs: Number.MAX_SAFE_INTEGER,
        });
      }
    }
    await store.settle({ scope: 'gov', id: 'r', nowMs: 0, markerTtlMs: 1, buckets: [], usage });
    html = join(dir, 'usage.html');
    let err = '';
    const code = await main(['--html', html], {
      out: () => undefined,
      err: (s) => (err += s),
      env: { SLUICE_REDIS_URL: 'redis://unused' },
      open: () => Promise.resolve(store),
      now: () => NOW,
    });
    assert.equal(code, 0, err);
  });

  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('Chromium paints every series colour of the charts, and no request leaves the page', async () => {
    const png = join(dir, 'usage.png');
    const r = spawnSync(
      CHROMIUM,
      [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--hide-scrollbars',
        // Nothing may be fetched: a page that needed the network would render without it.
        '--host-resolver-rules=MAP * ~NOTFOUND',
        '--window-size=1100,2400',
        `--screenshot=${png}`,
        `file://${html}`,
      ],
      { encoding: 'utf8', timeout: 60_000 },
    );
    assert.equal(r.status, 0, `chromium: ${r.stderr}`);
    const keep = process.env['SLUICE_REPORT_SCREENSHOT'];
    if (keep) await copyFile(png, keep);
    const { width, height, rgba } = decodePng(await readFile(png));
    assert.deepEqual([width, height], [1100, 2400]);
    const counts = new Map<string, number>();
    for (let i = 0; i < rgba.length; i += 4) {
      const hex = `#${[rgba[i]!, rgba[i + 1]!, rgba[i + 2]!]
        .map((v) => v.toString(16).padStart(2, '0'))
        .join('')
        .toUpperCase()}`;
      counts.set(hex, (counts.get(hex) ?? 0) + 1);
    }
    // Ten consumers: seven drawn on their own, three as "other"; every colour fills bars.
    for (const colour of [...PALETTE, OTHER_COLOUR]) {
      assert.ok((counts.get(colour) ?? 0) > 500, `${colour}: ${counts.get(colour) ?? 0} pixels`);
    }
  });

  it('Chromium renders the top refusals: per reason, then reason × consumer × model', () => {
    const r = spawnSync(
      CHROMIUM,
      [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--host-resolver-rules=MAP * ~NOTFOUND',
        '--dump-dom',
        `file://${html}`,
      ],
      { encoding: 'utf8', timeout: 60_000, maxBuffer: 16 * 1024 * 1024 },
    );
    assert.equal(r.status, 0, `chromium: ${r.stderr}`);
    const dom = r.stdout.slice(r.stdout.indexOf('Top refusals'));
    // 20 days × 2 budget refusals of svc-0; 10 rate-limit refusals of svc-1.
    assert.match(dom, /budget_exceeded<\/th><td>40<\/td>/);
    assert.match(dom, /rate_limit_exceeded<\/th><td>10<\/td>/);
    assert.match(dom, /<th scope="row">budget_exceeded<\/th><td class="name">svc-0<\/td>/);
  });
});
