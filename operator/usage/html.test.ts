import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { MemoryStore } from '../../extproc/state/memory.js';
import { emptyUsage, type RefusalMetric, type UsageRow } from '../../extproc/state/store.js';
import {
  daysOfMonth,
  MAX_REFUSAL_ROWS,
  MAX_SERIES,
  OTHER_COLOUR,
  PALETTE,
  renderUsageHtml,
} from './html.js';
import { main } from './main.js';

function row(consumer: string, team: string, model: string, costMicros: number): UsageRow {
  return {
    scope: 'gov',
    dims: { consumer, team, model, route: 'ns/chat' },
    values: { ...emptyUsage(), requests: 1, totalTokens: 100, costMicros },
  };
}

describe('renderUsageHtml', () => {
  it('escapes every name: a consumer called <script> is text, not markup', () => {
    const html = renderUsageHtml({
      month: '2026-03',
      days: [{ day: '2026-03-01', rows: [row('<script>alert(1)</script>', 'a&b', '"m"', 5)] }],
      generatedAtMs: 0,
    });
    assert.ok(!html.includes('<script>'));
    assert.ok(html.includes('&lt;script&gt;alert(1)&lt;/script&gt;'));
    assert.ok(html.includes('a&amp;b'));
    assert.ok(html.includes('&quot;m&quot;'));
  });

  it('is self-contained: no script, no link, no external URL', () => {
    const html = renderUsageHtml({
      month: '2026-03',
      days: [{ day: '2026-03-01', rows: [row('a', 't', 'm', 5)] }],
      generatedAtMs: 0,
    });
    for (const bad of [
      /<script/i,
      /<link/i,
      /\bsrc=/i,
      /\bhref=/i,
      /url\(/i,
      /@import/i,
      /https?:/i,
    ]) {
      assert.doesNotMatch(html, bad);
    }
  });

  it(`draws the ${MAX_SERIES} largest series and sums the rest as other`, () => {
    const rows = Array.from({ length: MAX_SERIES + 3 }, (_, i) =>
      row(`c${i}`, 't', 'm', (i + 1) * 1000),
    );
    const html = renderUsageHtml({
      month: '2026-03',
      days: [{ day: '2026-03-01', rows }],
      generatedAtMs: 0,
    });
    const spendByConsumer = html.slice(html.indexOf('Spend per day by consumer'));
    const legend = spendByConsumer.slice(0, spendByConsumer.indexOf('</ul>'));
    assert.ok(legend.includes('other (3)'));
    assert.ok(legend.includes(OTHER_COLOUR));
    // The largest is first, in the first colour; the three smallest are not drawn on their own.
    assert.match(legend, new RegExp(`${PALETTE[0]}"></span>c${MAX_SERIES + 2}<`));
    for (const small of ['c0<', 'c1<', 'c2<']) assert.ok(!legend.includes(`</span>${small}`));
  });

  it('shows cache hits and what they saved, apart from requests', () => {
    const r = row('alice', 'red', 'gpt-4o', 1_000_000);
    const html = renderUsageHtml({
      month: '2026-03',
      days: [
        {
          day: '2026-03-02',
          rows: [
            {
              ...r,
              values: { ...r.values, cachedRequests: 7, savedTokens: 700, savedMicros: 3_250_000 },
            },
          ],
        },
      ],
      generatedAtMs: 0,
    });
    assert.match(html, /cache hits<b>7<\/b>/);
    assert.match(html, /saved by the cache<b>\$3\.25<\/b>/);
    assert.match(html, /<th scope="col">cache hits<\/th><th scope="col">saved<\/th>/);
    assert.match(
      html,
      /<th scope="row">red<\/th><td>1<\/td>.*?<td>\$1\.00<\/td><td>7<\/td><td>\$3\.25<\/td>/,
    );
  });

  it('lists the top refusals: by reason, then reason × consumer × model, names escaped', () => {
    const refused = (
      consumer: string,
      model: string,
      v: Partial<Record<RefusalMetric, number>>,
    ): UsageRow => ({
      scope: 'gov',
      dims: { consumer, team: 't', model, route: 'r' },
      values: { ...emptyUsage(), ...v },
    });
    const html = renderUsageHtml({
      month: '2026-03',
      days: [
        {
          day: '2026-03-01',
          rows: [
            refused('alice', 'gpt-4o', { refusedBudget: 5, refusedRateLimit: 2 }),
            refused('<bob>', 'gpt-4o', { refusedAccessDenied: 1 }),
          ],
        },
        { day: '2026-03-02', rows: [refused('alice', 'gpt-4o', { refusedBudget: 4 })] },
      ],
      generatedAtMs: 0,
    });
    const section = html.slice(html.indexOf('<h2>Top refusals</h2>'));
    // Per reason, largest first, summed over the days.
    assert.match(
      section,
      /budget_exceeded<\/th><td>9<\/td>.*rate_limit_exceeded<\/th><td>2<\/td>.*access_denied<\/th><td>1<\/td>/s,
    );
    assert.match(
      section,
      /<th scope="row">budget_exceeded<\/th><td class="name">alice<\/td><td class="name">gpt-4o<\/td><td>9<\/td>/,
    );
    assert.ok(section.includes('&lt;bob&gt;') && !section.includes('<bob>'));
  });

  it(`shows the ${MAX_REFUSAL_ROWS} largest refusal rows and counts the rest`, () => {
    const rows = Array.from({ length: MAX_REFUSAL_ROWS + 2 }, (_, i) => ({
      ...row(`c${i}`, 't', 'm', 0),
      values: { ...emptyUsage(), refusedRateLimit: i + 1 },
    }));
    const html = renderUsageHtml({
      month: '2026-03',
      days: [{ day: '2026-03-01', rows }],
      generatedAtMs: 0,
    });
    const section = html.slice(html.indexOf('<h2>Top refusals</h2>'));
    assert.match(section, /2 more \(reason, consumer, model\) combinations, 3 refusals\./);
    assert.ok(section.includes('>c16<'), 'the largest is shown');
    assert.ok(!section.includes('>c0<') && !section.includes('>c1<'), 'the two smallest are not');
  });

  it('a month without refusals says so', () => {
    const html = renderUsageHtml({
      month: '2026-03',
      days: [{ day: '2026-03-01', rows: [row('a', 't', 'm', 5)] }],
      generatedAtMs: 0,
    });
    assert.match(html, /No refused requests recorded this month\./);
  });

  it('an empty month says so instead of drawing', () => {
    const html = renderUsageHtml({ month: '2026-03', days: [], generatedAtMs: 0 });
    assert.match(html, /nothing recorded/);
    assert.doesNotMatch(html, /<svg/);
  });
});

describe('daysOfMonth', () => {
  it('a past month is whole; the current one stops today', () => {
    assert.equal(daysOfMonth('2024-02', Date.parse('2026-01-01')).length, 29);
    assert.deepEqual(daysOfMonth('2026-03', Date.parse('2026-03-02T23:00:00Z')), [
      '2026-03-01',
      '2026-03-02',
    ]);
  });
});

describe('sluice usage --html', () => {
  it('writes the month of the day store rows, refuses --json with it', async () => {
    const store = new MemoryStore();
    await store.settle({
      scope: 'gov',
      id: 'r1',
      nowMs: 0,
      markerTtlMs: 120_000,
      buckets: [],
      usage: [
        {
          period: 'day',
          periodKey: '2026-03-02',
          dims: { consumer: 'alice', team: 'red', model: 'gpt-4o', route: 'chat' },
          values: { ...emptyUsage(), requests: 2, totalTokens: 30, costMicros: 1_500_000 },
          expireAtMs: Number.MAX_SAFE_INTEGER,
        },
      ],
    });
    const dir = await mkdtemp(join(tmpdir(), 'sluice-html-'));
    try {
      const file = join(dir, 'usage.html');
      let out = '';
      let err = '';
      const io = {
        out: (s: string) => (out += s),
        err: (s: string) => (err += s),
        env: { SLUICE_REDIS_URL: 'redis://unused' },
        open: () => Promise.resolve(store),
        now: () => Date.parse('2026-03-31T12:00:00Z'),
      };
      assert.equal(await main(['--html', file, '--at', '2026-03'], io), 0, err);
      assert.match(out, /wrote .*usage\.html: usage of 2026-03 \(UTC\), 31 days/);
      const html = await readFile(file, 'utf8');
      assert.match(html, /\$1\.50/);
      assert.match(html, /alice/);
      assert.equal(await main(['--html', file, '--json'], io), 2);
      assert.match(err, /--html and --json exclude each other/);
      assert.equal(await main(['--html', join(dir, 'no/such/dir/x.html')], io), 1);
      assert.match(err, /cannot write .*ENOENT/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
