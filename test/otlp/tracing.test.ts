// Traces against a real OTLP receiver: the OpenTelemetry Collector's pdata decoders (receiver/
// main.go, built by setup.mjs from the Go module proxy) take what `sluice run` exports over
// OTLP/HTTP protobuf when OTEL_EXPORTER_OTLP_ENDPOINT is set. Called through both official SDKs:
// a caller's traceparent is continued, a request without one starts its own trace, a retried
// upstream gives one child span per attempt, masking and a governance refusal show as events,
// GenAI attributes carry models and usage, and no prompt or completion text is exported.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { stringify } from 'yaml';
import { main as keysMain } from '../../operator/keys/main.js';
import { startMockProvider, type MockProvider } from '../../operator/mock-provider/provider.js';
import { run, type RunningGateway } from '../../operator/standalone/run.js';
import { secretDoc, serviceDocs } from '../e2e/harness.js';

const UPSTREAM = 'sk-upstream-otlp';
const SECRET_PROMPT = 'the purple elephant sings at midnight';
const EMAIL = 'ada.lovelace@example.com';
const ANSWER = 'a completion nobody may export';
const CALLER_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CALLER_SPAN = '00f067aa0ba902b7';

interface OtlpValue {
  stringValue?: string;
  intValue?: string | number;
  boolValue?: boolean;
  doubleValue?: number;
  arrayValue?: { values?: OtlpValue[] };
}
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes?: { key: string; value: OtlpValue }[];
  events?: { name: string; attributes?: { key: string; value: OtlpValue }[] }[];
  status?: { code?: number };
}

function value(v: OtlpValue): unknown {
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.arrayValue) return (v.arrayValue.values ?? []).map(value);
  return undefined;
}

function attrs(list: { key: string; value: OtlpValue }[] | undefined): Record<string, unknown> {
  return Object.fromEntries((list ?? []).map((a) => [a.key, value(a.value)]));
}

function route(name: string, model: string, backends: Record<string, unknown>[]) {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'AIRoute',
    metadata: { name, namespace: 'e2e' },
    spec: { models: [{ exact: model }], backends, retry: { attempts: 1, retryOn: ['5xx'] } },
  };
}

function backend(name: string, provider: string, svc: string, priority = 0) {
  return {
    name,
    provider,
    priority,
    endpoint: { service: { name: svc, port: 80 } },
    credential: { secretRef: { name: 'upstream' } },
  };
}

describe('otlp: traces of sluice run in a real OTLP receiver', () => {
  let receiver: ChildProcess;
  let receiverUrl: string;
  let gateway: RunningGateway;
  const mocks: MockProvider[] = [];
  let dir: string;
  let key: string;
  const spans: OtlpSpan[] = [];
  let raw = '';
  let logged = '';

  before(async () => {
    const setup = spawnSync(process.execPath, [new URL('./setup.mjs', import.meta.url).pathname], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    assert.equal(setup.status, 0, 'test/otlp/setup.mjs failed');
    const bin = setup.stdout.trim().split('\n').at(-1)!;
    receiver = spawn(bin, ['-listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const first = await new Promise<string>((resolve, reject) => {
      receiver.once('exit', (code) => reject(new Error(`receiver exited ${code}`)));
      createInterface({ input: receiver.stdout! }).once('line', resolve);
    });
    receiverUrl = `http://${/^listening (\S+)$/.exec(first)![1]}`;

    const [ok, anthropic, flaky] = await Promise.all([
      startMockProvider({
        name: 'ok',
        auth: { bearer: UPSTREAM },
        defaults: { usage: { input: 12, output: 9 }, content: ANSWER },
      }),
      startMockProvider({
        name: 'anthropic',
        auth: { anthropicKey: UPSTREAM },
        defaults: { usage: { input: 7, output: 5 }, content: ANSWER },
      }),
      startMockProvider({ name: 'flaky', defaults: { status: 500 } }),
    ]);
    mocks.push(ok, anthropic, flaky);
    dir = await mkdtemp(join(tmpdir(), 'sluice-otlp-'));
    const docs = [
      route('chat', 'gpt-main', [backend('primary', 'openai', 'mock-ok')]),
      route('claude', 'claude-main', [backend('claude', 'anthropic', 'mock-anthropic')]),
      // The flaky backend answers 500; the fallback of the next priority serves.
      route('fallback', 'gpt-fallback', [
        backend('flaky', 'openai', 'mock-flaky'),
        backend('spare', 'openai', 'mock-ok', 1),
      ]),
      {
        apiVersion: 'sluice.dev/v1alpha1',
        kind: 'AIPolicy',
        metadata: { name: 'gov', namespace: 'e2e' },
        spec: {
          targetRefs: [{ name: 'chat' }, { name: 'claude' }, { name: 'fallback' }],
          consumers: { required: true, keys: {} },
          masking: { detectors: ['EMAIL'], actions: { EMAIL: 'mask' }, reversible: true },
          pricing: { models: { 'gpt-*': { inputPerMTok: 1, outputPerMTok: 1 } } },
          access: {
            default: 'allow',
            rules: [{ name: 'no-interns', effect: 'deny', teams: ['interns'] }],
          },
        },
      },
      secretDoc('upstream', UPSTREAM),
      ...serviceDocs('mock-ok', ok.port),
      ...serviceDocs('mock-anthropic', anthropic.port),
      ...serviceDocs('mock-flaky', flaky.port),
    ];
    await writeFile(join(dir, 'manifests.yaml'), docs.map((d) => stringify(d)).join('---\n'));
    const keysFile = join(dir, 'keys.yaml');
    for (const [consumer, team] of [
      ['app', 'apps'],
      ['intern', 'interns'],
    ] as const) {
      let out = '';
      const argv = ['create', '--consumer', consumer, '--team', team, '--file', keysFile, '--json'];
      assert.equal(await keysMain(argv, { out: (s) => (out += s), err: () => undefined }), 0);
      if (consumer === 'app') key = (JSON.parse(out) as { key: string }).key;
      else process.env['SLUICE_OTLP_INTERN_KEY'] = (JSON.parse(out) as { key: string }).key;
    }
    gateway = await run({
      files: [dir],
      host: '127.0.0.1',
      port: 0,
      compile: { messageTimeoutMs: 5000 },
      logger: pino(
        { level: 'trace' },
        new Writable({
          write(c: Buffer, _e, cb) {
            logged += c.toString('utf8');
            cb();
          },
        }),
      ),
      registry: new Registry(),
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: receiverUrl, OTEL_SERVICE_NAME: 'sluice-test' },
      emulator: { retryBackoffBaseMs: 0 },
    });

    const opts = { maxRetries: 0, timeout: 15_000, baseURL: `${gateway.url}/v1` };
    const traced = new OpenAI({
      ...opts,
      apiKey: key,
      defaultHeaders: { traceparent: `00-${CALLER_TRACE}-${CALLER_SPAN}-01`, tracestate: 'x=1' },
    });
    const messages = [{ role: 'user' as const, content: `${SECRET_PROMPT}, mail ${EMAIL}` }];
    await traced.chat.completions.create({ model: 'gpt-main', messages });
    const stream = await traced.chat.completions.create({
      model: 'gpt-main',
      messages,
      stream: true,
    });
    for await (const c of stream) void c;
    await traced.chat.completions.create({ model: 'gpt-fallback', messages });
    const anthropicClient = new Anthropic({
      maxRetries: 0,
      timeout: 15_000,
      apiKey: key,
      baseURL: gateway.url,
    });
    await anthropicClient.messages.create({ model: 'claude-main', max_tokens: 16, messages });
    const intern = new OpenAI({ ...opts, apiKey: process.env['SLUICE_OTLP_INTERN_KEY']! });
    const denied = await intern.chat.completions
      .create({ model: 'gpt-main', messages })
      .catch((e: unknown) => e);
    assert.ok(denied instanceof OpenAI.PermissionDeniedError, String(denied));

    // Closing flushes the batch: everything exported is in the receiver afterwards.
    await gateway.close();
    const res = await fetch(`${receiverUrl}/received`);
    raw = await res.text();
    const requests = JSON.parse(raw) as {
      resourceSpans: {
        resource: { attributes: { key: string; value: OtlpValue }[] };
        scopeSpans: { spans: OtlpSpan[] }[];
      }[];
    }[];
    for (const r of requests) {
      for (const rs of r.resourceSpans) {
        assert.equal(attrs(rs.resource.attributes)['service.name'], 'sluice-test');
        for (const ss of rs.scopeSpans) spans.push(...ss.spans);
      }
    }
  });

  after(async () => {
    await gateway?.close();
    receiver?.kill('SIGTERM');
    await Promise.all(mocks.map((m) => m.close()));
    if (dir) await rm(dir, { recursive: true, force: true });
    delete process.env['SLUICE_OTLP_INTERN_KEY'];
  });

  const servers = () => spans.filter((s) => s.kind === 2);
  const clients = (parent: OtlpSpan) =>
    spans.filter((s) => s.kind === 3 && s.parentSpanId === parent.spanId);

  it('the receiver decoded every export; one SERVER span per request', async () => {
    assert.equal(await (await fetch(`${receiverUrl}/rejected`)).text(), '0');
    assert.equal(servers().length, 5, JSON.stringify(spans.map((s) => s.name)));
    assert.match(logged, /"event":"tracing"/);
  });

  it("continues the caller's traceparent; a request without one starts its own trace", () => {
    const traced = servers().filter((s) => s.traceId === CALLER_TRACE);
    assert.equal(traced.length, 3);
    for (const s of traced) assert.equal(s.parentSpanId, CALLER_SPAN);
    const claude = servers().find((s) => s.name === 'chat claude-main')!;
    assert.ok(claude, 'no span for the Anthropic call');
    assert.notEqual(claude.traceId, CALLER_TRACE);
    assert.ok(!claude.parentSpanId, 'a request without traceparent is a root span');
  });

  it('hands each provider a traceparent naming the attempt span that called it', () => {
    const main = servers().find((s) => s.name === 'chat gpt-main' && s.traceId === CALLER_TRACE)!;
    const [attempt] = clients(main);
    const sent = mocks[0]!.requests.map((r) => r.headers['traceparent']);
    assert.ok(
      sent.includes(`00-${CALLER_TRACE}-${attempt!.spanId}-01`),
      `the provider got ${JSON.stringify(sent)}`,
    );
    // The fallback's two attempts: each backend saw its own attempt's span.
    const fb = servers().find((s) => s.name === 'chat gpt-fallback')!;
    const ids = clients(fb).map((s) => s.spanId);
    const flaky = mocks[2]!.requests.map((r) => String(r.headers['traceparent']));
    assert.ok(
      flaky.some((tp) => ids.some((id) => tp === `00-${CALLER_TRACE}-${id}-01`)),
      `the flaky backend got ${JSON.stringify(flaky)}`,
    );
    for (const r of mocks.flatMap((m) => m.requests)) {
      assert.notEqual(
        r.headers['traceparent'],
        `00-${CALLER_TRACE}-${CALLER_SPAN}-01`,
        "the caller's own span is not passed on",
      );
    }
  });

  it('GenAI attributes, usage and a CLIENT span per attempt with backend, provider and status', () => {
    const main = servers().find((s) => s.name === 'chat gpt-main' && s.traceId === CALLER_TRACE)!;
    const a = attrs(main.attributes);
    assert.equal(a['gen_ai.operation.name'], 'chat');
    assert.equal(a['gen_ai.request.model'], 'gpt-main');
    assert.equal(a['gen_ai.provider.name'], 'openai');
    assert.equal(a['gen_ai.usage.input_tokens'], 12);
    assert.equal(a['gen_ai.usage.output_tokens'], 9);
    assert.equal(a['http.response.status_code'], 200);
    assert.equal(a['sluice.route'], 'e2e/chat');
    assert.equal(a['sluice.consumer'], 'app');
    assert.ok(Number(main.endTimeUnixNano) > Number(main.startTimeUnixNano));
    const [attempt] = clients(main);
    assert.deepEqual(
      {
        backend: attrs(attempt!.attributes)['sluice.backend'],
        provider: attrs(attempt!.attributes)['gen_ai.provider.name'],
        status: attrs(attempt!.attributes)['http.response.status_code'],
      },
      { backend: 'e2e/chat/primary', provider: 'openai', status: 200 },
    );

    const fb = servers().find((s) => s.name === 'chat gpt-fallback')!;
    const tries = clients(fb).map((s) => attrs(s.attributes));
    assert.deepEqual(
      tries
        .map((t) => [
          t['sluice.attempt'],
          t['sluice.backend'],
          t['sluice.attempt.outcome'] ?? t['http.response.status_code'],
        ])
        .sort(),
      [
        [1, 'e2e/fallback/flaky', 'retried'],
        [2, 'e2e/fallback/spare', 200],
      ],
    );
    // Timed one by one: the retried attempt ends where the fallback begins, within the request.
    const [first, second] = clients(fb).sort(
      (x, y) =>
        Number(attrs(x.attributes)['sluice.attempt']) -
        Number(attrs(y.attributes)['sluice.attempt']),
    );
    const ns = (v: string) => BigInt(v);
    const slackNs = 5_000_000n; // the request's start is derived from a monotonic duration
    assert.ok(ns(first!.startTimeUnixNano) + slackNs >= ns(fb.startTimeUnixNano));
    assert.equal(first!.endTimeUnixNano, second!.startTimeUnixNano);
    assert.ok(ns(second!.startTimeUnixNano) > ns(first!.startTimeUnixNano));
    assert.equal(second!.endTimeUnixNano, fb.endTimeUnixNano);
    const claude = attrs(servers().find((s) => s.name === 'chat claude-main')!.attributes);
    assert.equal(claude['gen_ai.provider.name'], 'anthropic');
    assert.equal(claude['gen_ai.usage.output_tokens'], 5);
  });

  it('policy verdicts as events: masking counts, a governance refusal', () => {
    const main = servers().find((s) => s.name === 'chat gpt-main' && s.traceId === CALLER_TRACE)!;
    const masking = (main.events ?? []).filter((e) => e.name === 'sluice.masking');
    assert.ok(
      masking.some((e) => {
        const a = attrs(e.attributes);
        return a['sluice.finding.type'] === 'EMAIL' && a['sluice.finding.action'] === 'mask';
      }),
      JSON.stringify(main.events),
    );
    const refused = servers().find(
      (s) => attrs(s.attributes)['http.response.status_code'] === 403,
    )!;
    assert.ok(refused, 'no span for the refused request');
    assert.match(String(attrs(refused.attributes)['error.type']), /^[a-z_]+$/);
    assert.equal(refused.status?.code, 2);
    assert.ok((refused.events ?? []).some((e) => e.name === 'sluice.governance'));
    assert.equal(clients(refused).length, 0, 'a refused request never reached a backend');
  });

  it('exports no prompt or completion text', () => {
    assert.ok(raw.length > 0);
    for (const s of [SECRET_PROMPT, 'purple', EMAIL, 'lovelace', ANSWER]) {
      assert.ok(!raw.includes(s), `exported spans contain "${s}"`);
    }
  });
});
