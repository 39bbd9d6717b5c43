import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import {
  capLogFields,
  MAX_LOG_FIELD_CHARS,
  MAX_LOG_LIST_ITEMS,
  Telemetry,
  type RequestRecord,
} from './telemetry.js';

function record(over: Partial<RequestRecord>): RequestRecord {
  return {
    requestId: 'req-1',
    api: 'openai',
    operation: 'chat',
    route: 'ns/chat',
    requestModel: 'gpt-4o',
    responseModel: undefined,
    backend: undefined,
    provider: undefined,
    attempts: 0,
    status: 404,
    errorCode: 'model_not_found',
    stream: false,
    usage: undefined,
    durationMs: 1,
    ttftMs: undefined,
    outcome: 'refused',
    ...over,
  };
}

void describe('access log', () => {
  void it('caps every caller-controlled field with a visible marker', () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _e, cb) {
        lines.push(...chunk.toString().split('\n').filter(Boolean));
        cb();
      },
    });
    const t = new Telemetry(new Registry(), pino(sink));
    const huge = 'm'.repeat(300 * 1024);
    t.recordRequest(
      record({
        requestModel: huge,
        responseModel: `${'r'.repeat(MAX_LOG_FIELD_CHARS - 1)}😀tail`,
        consumer: 'c'.repeat(10_000),
        team: 't'.repeat(10_000),
        verdicts: Array.from({ length: 1000 }, (_, i) => `v${i}`),
      }),
    );
    assert.equal(lines.length, 1);
    assert.ok(lines[0]!.length < 8 * 1024, `a ${lines[0]!.length}-character line`);
    const e = JSON.parse(lines[0]!) as Record<string, unknown>;
    assert.equal(
      e['request_model'],
      `${'m'.repeat(MAX_LOG_FIELD_CHARS)}…[+${huge.length - MAX_LOG_FIELD_CHARS} chars]`,
    );
    // The emoji would be cut in half at the bound: it goes whole.
    assert.match(String(e['response_model']), /^r{255}…\[\+6 chars\]$/);
    assert.match(String(e['consumer']), /…\[\+9744 chars\]$/);
    assert.match(String(e['team']), /…\[\+9744 chars\]$/);
    const verdicts = e['verdicts'] as string[];
    assert.equal(verdicts.length, MAX_LOG_LIST_ITEMS + 1);
    assert.equal(verdicts.at(-1), `…[+${1000 - MAX_LOG_LIST_ITEMS} items]`);
  });

  void it('leaves short values, numbers and shapes as they are', () => {
    const v = { a: 'x', n: 3, b: true, u: undefined, o: { l: [1, 'y'] } };
    assert.deepEqual(capLogFields(v), v);
    // Not even copied: an access log line costs no second object tree when nothing is cut.
    assert.equal(capLogFields(v), v);
    // Copied, cut, only where a field is over its bound; the rest stays equal.
    const long = { ...v, o: { l: [1, 'y'.repeat(MAX_LOG_FIELD_CHARS + 1)] } };
    const capped = capLogFields(long);
    assert.notEqual(capped, long);
    assert.equal(capped.a, 'x');
    assert.match(String(capped.o.l[1]), /…\[\+1 chars\]$/);
  });
});

void describe('request metrics', () => {
  void it('counts each request under its own label values, whatever came before', async () => {
    const registry = new Registry();
    const t = new Telemetry(registry, pino({ level: 'silent' }));
    t.configApplied('v1', {
      routes: ['ns/chat', 'ns/b'],
      backends: ['openai'],
      models: ['gpt-4o', 'm2'],
    });
    const usage = (estimated: boolean, input: number, output: number) => ({
      inputTokens: input,
      outputTokens: output,
      cachedInputTokens: 0,
      cacheCreationInputTokens: 0,
      reasoningTokens: 0,
      totalTokens: input + output,
      estimated,
    });
    const ok = { status: 200, errorCode: undefined, outcome: 'complete' as const };
    const records = [
      record({ ...ok, usage: usage(false, 10, 5), durationMs: 20 }),
      record({ ...ok, usage: usage(false, 1, 2), durationMs: 2000 }),
      record({ ...ok, usage: usage(true, 7, 0) }),
      record({ status: 429, errorCode: 'rate_limited', outcome: 'rejected' }),
      record({}),
      record({ ...ok, route: 'ns/b', requestModel: 'm2', usage: usage(false, 3, 4) }),
      record({ ...ok, status: 500, errorCode: undefined }),
    ];
    for (const r of records) t.recordRequest(r);
    const json = await registry.getMetricsAsJSON();
    const values = (name: string) =>
      (json.find((m) => m.name === name)?.values ?? []) as {
        labels: Record<string, string | number>;
        value: number;
        metricName?: string;
      }[];
    const requests = values('sluice_requests_total').map((v) => [
      v.labels['sluice_route'],
      v.labels['gen_ai_request_model'],
      v.labels['status_code'],
      v.labels['error_code'],
      v.labels['outcome'],
      v.value,
    ]);
    assert.deepEqual(
      requests.sort(),
      [
        ['ns/b', 'm2', '200', '', 'complete', 1],
        ['ns/chat', 'gpt-4o', '200', '', 'complete', 3],
        ['ns/chat', 'gpt-4o', '404', 'model_not_found', 'refused', 1],
        ['ns/chat', 'gpt-4o', '429', 'rate_limited', 'rejected', 1],
        ['ns/chat', 'gpt-4o', '500', '', 'complete', 1],
      ].sort(),
    );
    const sums = (name: string) =>
      values(name)
        .filter((v) => v.metricName === `${name}_sum`)
        .map((v) => [
          v.labels['sluice_route'],
          v.labels['gen_ai_token_type'] ?? v.labels['error_type'],
          v.labels['sluice_estimated'] ?? '',
          v.value,
        ])
        .sort();
    assert.deepEqual(
      sums('gen_ai_client_token_usage'),
      [
        ['ns/b', 'input', 'false', 3],
        ['ns/b', 'output', 'false', 4],
        ['ns/chat', 'input', 'false', 11],
        ['ns/chat', 'input', 'true', 7],
        ['ns/chat', 'output', 'false', 7],
        ['ns/chat', 'output', 'true', 0],
      ].sort(),
    );
    assert.deepEqual(
      sums('gen_ai_server_request_duration_seconds'),
      [
        ['ns/b', '', '', 0.001],
        ['ns/chat', '', '', 2.021],
        ['ns/chat', '500', '', 0.001],
        ['ns/chat', 'model_not_found', '', 0.001],
        ['ns/chat', 'rate_limited', '', 0.001],
      ].sort(),
    );
  });
});

void describe('request metrics: consecutive requests', () => {
  void it('a request that differs from the one before in any one label counts under its own', async () => {
    const registry = new Registry();
    const t = new Telemetry(registry, pino({ level: 'silent' }));
    t.configApplied('v1', {
      routes: ['ns/chat', 'ns/b'],
      backends: ['openai', 'azure'],
      models: ['gpt-4o', 'm2'],
      consumers: ['c1', 'c2'],
    });
    const ok = { status: 200, errorCode: undefined, outcome: 'complete' as const };
    const base = { ...ok, backend: 'openai', provider: 'openai' as const, consumer: 'c1' };
    // Each differs from `base` in exactly one of the series' labels.
    const variants: Partial<RequestRecord>[] = [
      { operation: 'embeddings' },
      { provider: 'anthropic' },
      { requestModel: 'm2' },
      { responseModel: 'gpt-4o-2024' },
      { route: 'ns/b' },
      { backend: 'azure' },
      { consumer: 'c2' },
    ];
    for (const v of variants) {
      t.recordRequest(record(base));
      t.recordRequest(record({ ...base, ...v }));
      t.recordRequest(record({ ...base, ...v }));
    }
    t.recordRequest(record(base));
    const json = await registry.getMetricsAsJSON();
    const counts = (
      json.find((m) => m.name === 'sluice_requests_total')!.values as {
        labels: Record<string, string | number>;
        value: number;
      }[]
    ).map((v) => v.value);
    // base 8 times, each variant twice, each on its own series.
    assert.deepEqual(
      counts.sort((a, b) => a - b),
      [...variants.map(() => 2), 8],
    );
  });
});

void describe('request metrics: findings and spend', () => {
  void it('counts findings per route, policy, type, action and direction, and spend per team', async () => {
    const registry = new Registry();
    const t = new Telemetry(registry, pino({ level: 'silent' }));
    t.configApplied('v1', {
      routes: ['ns/chat', 'ns/b'],
      backends: ['openai'],
      models: ['gpt-4o'],
      policies: ['pii', 'strict'],
      detectorTypes: ['EMAIL', 'PHONE'],
      consumers: ['c1', 'c2'],
      teams: ['t1', 't2'],
    });
    const ok = { status: 200, errorCode: undefined, outcome: 'complete' as const };
    const f = (type: string, action: string, direction: string, count: number) => ({
      type,
      action,
      direction,
      count,
    });
    const records: Partial<RequestRecord>[] = [
      {
        policy: 'pii',
        findings: [f('EMAIL', 'mask', 'request', 2), f('PHONE', 'mask', 'request', 1)],
      },
      {
        policy: 'pii',
        findings: [f('EMAIL', 'mask', 'request', 1), f('EMAIL', 'mask', 'response', 1)],
      },
      {
        policy: 'pii',
        findings: [f('EMAIL', 'would_mask', 'request', 1), f('X-NEW', 'mask', 'request', 3)],
      },
      { policy: 'strict', findings: [f('EMAIL', 'mask', 'request', 5)] },
      { route: 'ns/b', policy: 'pii', findings: [f('EMAIL', 'mask', 'request', 7)] },
      { consumer: 'c1', team: 't1', costUsd: 0.5 },
      { consumer: 'c1', team: 't1', costUsd: 0.25 },
      { consumer: 'c1', team: 't2', costUsd: 1 },
      { consumer: 'c2', team: 't1', costUsd: 2 },
      { consumer: 'c1', team: 'unknown-team', costUsd: 4 },
      { route: 'ns/b', consumer: 'c1', team: 't1', costUsd: 8 },
      { consumer: 'c1', team: 't1', costUsd: 0 },
    ];
    for (const r of records) t.recordRequest(record({ ...ok, ...r }));
    const json = await registry.getMetricsAsJSON();
    const values = (name: string, labels: string[]) =>
      (
        json.find((m) => m.name === name)!.values as {
          labels: Record<string, string | number>;
          value: number;
        }[]
      )
        .map((v) => [...labels.map((l) => v.labels[l]), v.value])
        .sort();
    assert.deepEqual(
      values('sluice_policy_findings_total', [
        'sluice_route',
        'sluice_policy',
        'sluice_pii_type',
        'action',
        'direction',
      ]),
      [
        ['ns/b', 'pii', 'EMAIL', 'mask', 'request', 7],
        ['ns/chat', 'pii', 'EMAIL', 'mask', 'request', 3],
        ['ns/chat', 'pii', 'EMAIL', 'mask', 'response', 1],
        ['ns/chat', 'pii', 'EMAIL', 'would_mask', 'request', 1],
        ['ns/chat', 'pii', 'PHONE', 'mask', 'request', 1],
        ['ns/chat', 'pii', 'other', 'mask', 'request', 3],
        ['ns/chat', 'strict', 'EMAIL', 'mask', 'request', 5],
      ].sort(),
    );
    assert.deepEqual(
      values('sluice_spend_usd_total', ['sluice_route', 'sluice_consumer', 'sluice_team']),
      [
        ['ns/b', 'c1', 't1', 8],
        ['ns/chat', 'c1', 'other', 4],
        ['ns/chat', 'c1', 't1', 0.75],
        ['ns/chat', 'c1', 't2', 1],
        ['ns/chat', 'c2', 't1', 2],
      ].sort(),
    );
  });
});

void describe('stream metrics', () => {
  void it('sluice_extproc_active_streams counts open streams per filter, read at scrape time', async () => {
    const registry = new Registry();
    const t = new Telemetry(registry, pino({ level: 'silent' }));
    const router = t.streamMetrics('router');
    const upstream = t.streamMetrics('upstream');
    const series = async (): Promise<Record<string, number>> => {
      const m = await registry.getSingleMetric('sluice_extproc_active_streams')!.get();
      return Object.fromEntries(m.values.map((v) => [String(v.labels.filter), v.value]));
    };
    // A filter whose streams never opened has no series (as with inc/dec before).
    assert.deepEqual(await series(), {});
    router.opened();
    router.opened();
    router.opened();
    router.closed();
    upstream.opened();
    assert.deepEqual(await series(), { router: 2, upstream: 1 });
    upstream.closed();
    router.closed();
    assert.deepEqual(await series(), { router: 1, upstream: 0 });
    // The same metric children for a filter asked for twice (run.ts asks once per filter).
    t.streamMetrics('router').closed();
    assert.deepEqual(await series(), { router: 0, upstream: 0 });
    assert.match(
      await registry.metrics(),
      /sluice_extproc_active_streams\{filter="router"\} 0\nsluice_extproc_active_streams\{filter="upstream"\} 0/,
    );
  });
});

void describe('access log: written member by member', () => {
  void it('is the line the record object makes, whatever the record holds', () => {
    const usage = {
      inputTokens: 10,
      outputTokens: 5,
      cachedInputTokens: 2,
      cacheCreationInputTokens: 0,
      reasoningTokens: 1,
      totalTokens: 15,
      estimated: true,
    };
    const all: Partial<RequestRecord> = {
      responseModel: 'gpt-4o-2024',
      backend: 'openai',
      provider: 'openai',
      consumer: 'c1',
      team: 't1',
      costUsd: 0.000154,
      attempts: 2,
      status: 200,
      errorCode: undefined,
      stream: true,
      usage,
      durationMs: 12.34567,
      ttftMs: 1.5,
      outcome: 'complete',
      verdicts: ['mask'],
      governance: { policy: 'gov', verdicts: ['reserved', 'would_rate_limit_exceeded'] },
      policy: 'pii',
      findings: [{ direction: 'request', type: 'EMAIL', action: 'mask', count: 2 }],
      policyFailure: 'degraded',
      guard: [{ rule: 'r', kind: 'deny', action: 'block', count: 1 }],
      session: { id: 's-1', turn: 3 },
      context: {
        result: 'trimmed',
        contextTokens: 100,
        windowModel: 'gpt-4o',
        inputTokens: 90,
        outputTokens: 10,
        trimmedMessages: 2,
        inputTokensBefore: 120,
      },
      cache: { result: 'miss', reason: 'stream' },
    };
    const records: Partial<RequestRecord>[] = [
      {},
      all,
      { ...all, costUsd: Number.NaN, route: 'a "quoted" \\ route\n', requestModel: 'modèle-🚀' },
      {
        ...all,
        governance: undefined,
        verdicts: undefined,
        context: { ...all.context!, trimmedMessages: undefined },
      },
      { ...all, requestModel: 'm'.repeat(MAX_LOG_FIELD_CHARS + 1) },
      // 62 of its own and the policy's 2: at the bound, not over it.
      { ...all, verdicts: Array.from({ length: MAX_LOG_LIST_ITEMS - 2 }, (_, i) => `v${i}`) },
      { ...all, verdicts: ['x'.repeat(MAX_LOG_FIELD_CHARS + 1)] },
      {
        ...all,
        findings: Array.from({ length: MAX_LOG_LIST_ITEMS + 1 }, () => all.findings![0]!),
      },
      { ...all, context: { ...all.context!, windowModel: 'w'.repeat(MAX_LOG_FIELD_CHARS + 1) } },
      { ...all, session: { id: 's'.repeat(MAX_LOG_FIELD_CHARS + 1), turn: 1 } },
    ];
    const bytes: string[] = [];
    const strings: string[] = [];
    const direct = new Telemetry(
      new Registry(),
      pino({}, {
        write: () => assert.fail('a line written from a string'),
        writeParts: () => assert.fail('a line written in parts'),
        writeLine: (line: Buffer) => void bytes.push(line.toString('utf8')),
      } as unknown as pino.DestinationStream),
    );
    const viaObject = new Telemetry(
      new Registry(),
      pino({}, { write: (l: string) => void strings.push(l) }),
    );
    const now = Date.now;
    Date.now = () => 1_700_000_000_000;
    try {
      for (const r of records) {
        // The capped records go through the object: the destination is then handed parts.
        const capped =
          r !== records[0] && r !== all && r !== records[2] && r !== records[3] && r !== records[5];
        if (capped) continue;
        direct.recordRequest(record(r));
        viaObject.recordRequest(record(r));
      }
    } finally {
      Date.now = now;
    }
    assert.equal(bytes.length, 5);
    assert.deepEqual(bytes, strings);
  });

  void it('a record with a field to cut is written from its capped object', () => {
    const parts: string[] = [];
    const strings: string[] = [];
    const ours = new Telemetry(
      new Registry(),
      pino({}, {
        write: () => assert.fail('a line written from a string'),
        writeParts: (a: string, b: string, c: string) => void parts.push(`${a}${b}${c}`),
        writeLine: () => assert.fail('a capped line written member by member'),
      } as unknown as pino.DestinationStream),
    );
    const theirs = new Telemetry(
      new Registry(),
      pino({}, { write: (l: string) => void strings.push(l) }),
    );
    const now = Date.now;
    Date.now = () => 1_700_000_000_000;
    try {
      for (const r of [
        { requestModel: 'm'.repeat(MAX_LOG_FIELD_CHARS + 1) },
        { verdicts: Array.from({ length: MAX_LOG_LIST_ITEMS + 1 }, (_, i) => `v${i}`) },
        { verdicts: ['x'.repeat(MAX_LOG_FIELD_CHARS + 1)] },
        { session: { id: 's'.repeat(MAX_LOG_FIELD_CHARS + 1), turn: 1 } },
      ]) {
        ours.recordRequest(record(r));
        theirs.recordRequest(record(r));
      }
    } finally {
      Date.now = now;
    }
    assert.equal(parts.length, 4);
    assert.deepEqual(parts, strings);
    assert.match(parts[0]!, /…\[\+1 chars\]/);
  });
});
