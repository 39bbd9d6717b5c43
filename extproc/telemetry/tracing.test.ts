import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SpanKind } from '@opentelemetry/api';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace';
import { pino } from 'pino';
import { SHUTDOWN_EXPORT_MS, startTracing, Tracing, tracingFromEnv } from './tracing.js';
import type { RequestRecord } from './telemetry.js';
import { requestTrace } from './trace-context.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';

function record(over: Partial<RequestRecord> = {}): RequestRecord {
  return {
    requestId: 'r1',
    api: 'openai',
    operation: 'chat',
    route: 'ns/chat',
    requestModel: 'gpt-x',
    responseModel: 'gpt-x-2025',
    backend: 'ns/chat/a',
    provider: 'openai',
    attempts: 1,
    attemptList: [{ backend: 'ns/chat/a', provider: 'openai' }],
    status: 200,
    errorCode: undefined,
    stream: false,
    usage: undefined,
    durationMs: 40,
    ttftMs: undefined,
    outcome: 'complete',
    ...over,
  };
}

async function spansOf(ratio: number, r: RequestRecord) {
  const exporter = new InMemorySpanExporter();
  const t = new Tracing({ url: 'http://unused/v1/traces', samplingRatio: ratio, exporter });
  t.record(r, 1_000_000);
  await t.flush();
  const spans = exporter.getFinishedSpans();
  await t.shutdown();
  return spans;
}

describe('tracingFromEnv', () => {
  it('is off without an endpoint, or when the SDK is disabled', () => {
    assert.equal(tracingFromEnv({}, {}), undefined);
    assert.equal(
      tracingFromEnv(
        {},
        { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_SDK_DISABLED: 'true' },
      ),
      undefined,
    );
  });

  it('adds /v1/traces to a base endpoint; the traces endpoint is a full URL; the flag wins', () => {
    assert.equal(
      tracingFromEnv({}, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318/' })?.url,
      'http://c:4318/v1/traces',
    );
    assert.equal(
      tracingFromEnv({}, { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://c:4318/custom' })?.url,
      'http://c:4318/custom',
    );
    assert.deepEqual(
      tracingFromEnv(
        { otlpEndpoint: 'https://flag:4318', traceSamplingRatio: 0.25 },
        { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://env:4318', OTEL_TRACES_SAMPLER_ARG: '0.5' },
      ),
      { url: 'https://flag:4318/v1/traces', samplingRatio: 0.25 },
    );
    assert.equal(
      tracingFromEnv(
        {},
        { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_TRACES_SAMPLER_ARG: '0.5' },
      )?.samplingRatio,
      0.5,
    );
  });

  it('refuses a bad endpoint or ratio at start', () => {
    assert.throws(() => tracingFromEnv({ otlpEndpoint: 'c:4318' }, {}), /must be http/);
    assert.throws(() => tracingFromEnv({ otlpEndpoint: 'not a url' }, {}), /not a URL/);
    assert.throws(
      () =>
        tracingFromEnv(
          {},
          { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c', OTEL_TRACES_SAMPLER_ARG: '2' },
        ),
      /between 0 and 1/,
    );
  });
});

describe('Tracing', () => {
  it('ratio 0 records nothing started here, but a sampled caller is followed', async () => {
    assert.equal((await spansOf(0, record())).length, 0);
    const spans = await spansOf(
      0,
      record({ trace: requestTrace([{ traceparent: `00-${TRACE}-${SPAN}-01` }], 0) }),
    );
    assert.equal(spans.length, 2);
    for (const s of spans) assert.equal(s.spanContext().traceId, TRACE);
  });

  it('a malformed traceparent starts a new trace instead of failing', async () => {
    const spans = await spansOf(
      1,
      record({ trace: requestTrace([{ traceparent: '00-zz-yy-01' }], 1) }),
    );
    assert.equal(spans.length, 2);
    assert.notEqual(spans[0]!.spanContext().traceId, TRACE);
  });

  it('spans end at the record end and start its duration before, in the SDK clock units', async () => {
    const spans = await spansOf(1, record());
    const server = spans.find((s) => s.kind === SpanKind.SERVER)!;
    assert.deepEqual(server.startTime, [999, 960_000_000]);
    assert.deepEqual(server.endTime, [1000, 0]);
  });

  it('model names from callers are cut to the access log bound', async () => {
    const spans = await spansOf(1, record({ requestModel: 'm'.repeat(10_000) }));
    const server = spans.find((s) => s.kind === SpanKind.SERVER)!;
    assert.equal(String(server.attributes['gen_ai.request.model']).length, 256);
  });
});

describe('startTracing', () => {
  it('is off without an endpoint; a collector that is down does not hold shutdown', async () => {
    const log = pino({ level: 'silent' });
    assert.equal(startTracing({ env: {} }, log), undefined);
    const t = startTracing({ otlpEndpoint: 'http://127.0.0.1:9', env: {} }, log)!;
    t.onRequest(record());
    const started = Date.now();
    await t.shutdown();
    assert.ok(Date.now() - started < SHUTDOWN_EXPORT_MS + 1000);
  });

  it('a record it cannot turn into spans is logged once, never thrown', async () => {
    const lines: string[] = [];
    const log = pino({ level: 'error' }, { write: (l: string) => void lines.push(l) });
    const t = startTracing({ otlpEndpoint: 'http://127.0.0.1:9', env: {} }, log)!;
    const broken = {
      ...record(),
      get attemptList(): never {
        throw new Error('unreadable record');
      },
    };
    t.onRequest(broken);
    t.onRequest(broken);
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /"event":"tracing_failed".*unreadable record/);
    await t.shutdown();
  });
});

describe('Tracing: ids handed out while the request was live', () => {
  it('the request span and each attempt span take the ids the request handed out', async () => {
    const trace = requestTrace([{ traceparent: `00-${TRACE}-${SPAN}-01` }], 1);
    const spans = await spansOf(
      0,
      record({
        trace,
        attempts: 2,
        attemptList: [
          { backend: 'a', provider: 'openai', spanId: '1111111111111111' },
          { backend: 'b', provider: 'openai', spanId: '2222222222222222' },
        ],
      }),
    );
    const server = spans.find((s) => s.kind === SpanKind.SERVER)!;
    assert.equal(server.spanContext().traceId, TRACE);
    assert.equal(server.spanContext().spanId, trace.spanId);
    assert.equal(server.parentSpanContext?.spanId, SPAN);
    const attempts = spans
      .filter((s) => s.kind === SpanKind.CLIENT)
      .map((s) => s.spanContext().spanId);
    assert.deepEqual(attempts.sort(), ['1111111111111111', '2222222222222222']);
  });

  it('a new trace keeps the trace id and sampling decided at the start', async () => {
    const on = requestTrace([], 1);
    const spans = await spansOf(1, record({ trace: on }));
    for (const s of spans) assert.equal(s.spanContext().traceId, on.traceId);
    assert.equal((await spansOf(0, record({ trace: requestTrace([], 0) }))).length, 0);
  });

  it('content is an event only when the record carries it, and is not cut to the name bound', async () => {
    const none = await spansOf(1, record());
    assert.ok(none.every((s) => s.events.every((e) => !e.name.startsWith('gen_ai.content'))));
    const long = 'p'.repeat(2000);
    const spans = await spansOf(1, record({ content: { prompt: long, completion: 'c' } }));
    const server = spans.find((s) => s.kind === SpanKind.SERVER)!;
    const prompt = server.events.find((e) => e.name === 'gen_ai.content.prompt');
    assert.equal(prompt?.attributes?.['gen_ai.prompt'], long);
    const completion = server.events.find((e) => e.name === 'gen_ai.content.completion');
    assert.equal(completion?.attributes?.['gen_ai.completion'], 'c');
  });
});
