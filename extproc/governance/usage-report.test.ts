import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { emptyUsage, type UsageRow } from '../state/store.js';
import { buildUsageReport, formatUsageTable, formatUsd, usageReportJson } from './usage-report.js';

const row = (
  consumer: string,
  team: string,
  model: string,
  req: number,
  cost: number,
): UsageRow => ({
  scope: 'p',
  dims: { consumer, team, model, route: 'r' },
  values: {
    ...emptyUsage(),
    requests: req,
    inputTokens: req * 100,
    outputTokens: req * 10,
    cachedInputTokens: 0,
    totalTokens: req * 110,
    costMicros: cost,
    cachedRequests: 0,
    savedTokens: 0,
    savedMicros: 0,
  },
});

const rows = [
  row('alice', 'red', 'gpt-4o', 3, 1_234_567),
  row('bob', 'red', 'gpt-4o', 1, 10),
  row('alice', 'red', 'mini', 2, 500),
  row('anon', '', 'mini', 1, 0),
];

describe('usage report', () => {
  it('aggregates by a dimension, most expensive first', () => {
    const r = buildUsageReport(rows, { period: 'day', periodKey: '2026-03-31', by: 'consumer' });
    assert.deepEqual(
      r.rows.map((x) => [x.key, x.requests, x.costMicros]),
      [
        ['alice', 5, 1_235_067],
        ['bob', 1, 10],
        ['anon', 1, 0],
      ],
    );
    assert.equal(r.total.requests, 7);
  });

  it('prints a table and JSON', () => {
    const r = buildUsageReport(rows, { period: 'month', periodKey: '2026-03', by: 'team' });
    assert.equal(
      formatUsageTable(r),
      [
        'Usage for month 2026-03 (UTC), by team',
        'TEAM    REQUESTS  INPUT  CACHED  OUTPUT  TOTAL       COST  CACHE HITS  SAVED TOKENS  SAVED',
        'red            6    600       0      60    660  $1.235077           0             0  $0.00',
        '(none)         1    100       0      10    110      $0.00           0             0  $0.00',
        'TOTAL          7    700       0      70    770  $1.235077           0             0  $0.00',
        '',
      ].join('\n'),
    );
    const json = usageReportJson(r) as { rows: { team: string | null; costUsd: string }[] };
    assert.deepEqual(
      json.rows.map((x) => [x.team, x.costUsd]),
      [
        ['red', '1.235077'],
        [null, '0.000000'],
      ],
    );
    assert.match(
      formatUsageTable(buildUsageReport([], { period: 'day', periodKey: 'd', by: 'model' })),
      /no usage recorded/,
    );
  });

  it('keeps cache hits apart from requests providers answered', () => {
    const hits: UsageRow = {
      scope: 'p',
      dims: { consumer: 'alice', team: 'red', model: 'gpt-4o', route: 'r' },
      values: {
        ...emptyUsage(),
        cachedRequests: 4,
        savedTokens: 440,
        savedMicros: 2_500,
        // A charged hit's share is spend like any other.
        totalTokens: 44,
        costMicros: 250,
      },
    };
    const r = buildUsageReport([...rows, hits], { period: 'day', periodKey: 'd', by: 'team' });
    const red = r.rows.find((x) => x.key === 'red')!;
    assert.deepEqual(
      [red.requests, red.cachedRequests, red.savedTokens, red.savedMicros, red.totalTokens],
      [6, 4, 440, 2_500, 704],
    );
    assert.deepEqual([r.total.requests, r.total.cachedRequests], [7, 4]);
    const table = formatUsageTable(r).split('\n');
    assert.match(table[1]!, /CACHE HITS\s+SAVED TOKENS\s+SAVED$/);
    assert.match(table[2]!, /^red\s+6\s.*\s4\s+440\s+\$0\.0025$/);
    const json = usageReportJson(r) as {
      rows: {
        team: string | null;
        cachedRequests: number;
        savedTokens: number;
        savedUsd: string;
      }[];
      total: { cachedRequests: number; savedUsd: string };
    };
    const jr = json.rows.find((x) => x.team === 'red')!;
    assert.deepEqual([jr.cachedRequests, jr.savedTokens, jr.savedUsd], [4, 440, '0.002500']);
    assert.deepEqual([json.total.cachedRequests, json.total.savedUsd], [4, '0.002500']);
  });

  it('leaves out a row that only counts refusals: it served nothing', () => {
    const refusedOnly: UsageRow = {
      scope: 'p',
      dims: { consumer: 'mallory', team: 't', model: 'm', route: 'r' },
      values: { ...emptyUsage(), refusedBudget: 3 },
    };
    const r = buildUsageReport([...rows, refusedOnly], {
      period: 'month',
      periodKey: '2026-03',
      by: 'consumer',
    });
    assert.ok(!r.rows.some((x) => x.key === 'mallory'));
    assert.deepEqual(
      r,
      buildUsageReport(rows, { period: 'month', periodKey: '2026-03', by: 'consumer' }),
    );
  });

  it('formats dollars without float noise', () => {
    assert.equal(formatUsd(0), '$0.00');
    assert.equal(formatUsd(10_000), '$0.01');
    assert.equal(formatUsd(1_500), '$0.0015');
    assert.equal(formatUsd(1_234_567_890_123), '$1,234,567.890123');
  });
});
