// Traces through the real ext_proc server, driven as Envoy drives it: the request span continues
// Envoy's ext_proc span from the stream's initial metadata, each upstream attempt hands the
// provider a traceparent naming its own exported span, and prompt/completion text is in the
// span's events only on a route whose masking opts in — masked, never the raw values.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, before, describe, it } from 'node:test';
import { SpanKind } from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import {
  ExtProcClient,
  ExtProcFilter,
  type HeaderList,
} from '../../operator/envoy-sim/ext-proc/index.js';
import { run, type RunningExtproc } from '../../extproc/run.js';
import { chatHeaders, CONFIG, continued, get, ROUTER, upstreamFilter, waitFor } from './harness.js';

const ENVOY_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const ENVOY_SPAN = '00f067aa0ba902b7';
const CALLER_TP = '00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01';
const EMAIL = 'dana.whitfield@example.org';
const PHONE = '+1 415 555 0142';

const config = `${CONFIG}
  - name: traced
    models: [{ exact: gpt-traced }]
    backends: [{ name: openai }]
    policy: { name: content-on, masking: { traceContent: true } }
  - name: untraced
    models: [{ exact: gpt-untraced }]
    backends: [{ name: openai }]
    policy: { name: content-off, masking: {} }
`;

let dir: string;
let ext: RunningExtproc;
let client: ExtProcClient;
const exporter = new InMemorySpanExporter();

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-trace-'));
  const configPath = join(dir, 'extproc.yaml');
  await writeFile(configPath, config);
  ext = await run({
    configPath,
    listen: `unix:${join(dir, 'extproc.sock')}`,
    maxMessageBytes: 16 * 1024 * 1024,
    watchConfig: false,
    shutdownGraceMs: 500,
    logger: pino({ level: 'silent' }),
    registry: new Registry(),
    now: () => performance.now(),
    env: {},
    tracing: { url: 'http://unused/v1/traces', samplingRatio: 1, exporter },
  });
  client = new ExtProcClient(ext.grpcAddress);
});

after(async () => {
  client.close();
  await ext.close();
  await rm(dir, { recursive: true, force: true });
});

function answer(content: string): { headers: HeaderList; body: Buffer } {
  const body = Buffer.from(
    JSON.stringify({
      id: 'chatcmpl-1',
      object: 'chat.completion',
      created: 1,
      model: 'gpt-4o-mini',
      choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 },
    }),
  );
  return {
    headers: [
      [':status', '200'],
      ['content-type', 'application/json'],
      ['content-length', String(body.length)],
    ],
    body,
  };
}

/** One request as Envoy with tracing sends it: its ext_proc span in the stream metadata. */
async function exchange(model: string, reply: string) {
  exporter.reset();
  const body = Buffer.from(
    JSON.stringify({ model, messages: [{ role: 'user', content: `Write to ${EMAIL} today.` }] }),
  );
  const router = new ExtProcFilter(client, {
    ...ROUTER,
    initialMetadata: { traceparent: `00-${ENVOY_TRACE}-${ENVOY_SPAN}-01` },
  });
  const routed = continued(
    await router.runRequest(chatHeaders([['traceparent', CALLER_TP]]), [body]),
  );
  const up = new ExtProcFilter(client, upstreamFilter('sluice/backend/openai'));
  const sent = continued(
    await up.runRequest(routed.headers, [routed.body], undefined, { dataWithHeaders: true }),
  );
  up.close();
  const a = answer(reply);
  continued(await router.runResponse(a.headers, [a.body]));
  await waitFor(() => exporter.getFinishedSpans().length >= 2);
  return { sent, spans: exporter.getFinishedSpans() };
}

function everything(spans: readonly ReadableSpan[]): string {
  return JSON.stringify(
    spans.map((s) => ({ attributes: s.attributes, events: s.events, name: s.name })),
  );
}

describe('traces through the ext_proc server', () => {
  it("continues Envoy's span from the metadata and hands the provider the attempt's span", async () => {
    const { sent, spans } = await exchange('gpt-untraced', 'ok');
    const server = spans.find((s) => s.kind === SpanKind.SERVER)!;
    const attempt = spans.find((s) => s.kind === SpanKind.CLIENT)!;
    assert.equal(server.spanContext().traceId, ENVOY_TRACE);
    assert.equal(
      server.parentSpanContext?.spanId,
      ENVOY_SPAN,
      "Envoy's ext_proc span is the parent",
    );
    assert.equal(attempt.parentSpanContext?.spanId, server.spanContext().spanId);
    const tp = get(sent.headers, 'traceparent');
    assert.equal(tp, `00-${ENVOY_TRACE}-${attempt.spanContext().spanId}-01`);
  });

  it('records no prompt or completion text on a route that does not opt in', async () => {
    const { spans } = await exchange('gpt-untraced', `Done, mailed ${EMAIL}.`);
    const names = spans.flatMap((s) => s.events.map((e) => e.name));
    assert.ok(!names.includes('gen_ai.content.prompt'));
    assert.ok(!names.includes('gen_ai.content.completion'));
    assert.ok(!everything(spans).includes('Write to'), 'no prompt text anywhere');
  });

  it('records masked prompt and completion on a route that opts in, never the raw values', async () => {
    // The model echoes the placeholder and adds a phone number of its own.
    const { sent, spans } = await exchange('gpt-traced', `Mailed [EMAIL_1]; call ${PHONE}.`);
    assert.ok(!sent.body.toString().includes(EMAIL), 'the provider got the masked prompt');
    const server = spans.find((s) => s.kind === SpanKind.SERVER)!;
    const prompt = server.events.find((e) => e.name === 'gen_ai.content.prompt');
    const completion = server.events.find((e) => e.name === 'gen_ai.content.completion');
    assert.match(String(prompt?.attributes?.['gen_ai.prompt']), /Write to \[EMAIL_1\] today\./);
    assert.match(
      String(completion?.attributes?.['gen_ai.completion']),
      /Mailed \[EMAIL_1\]; call \[PHONE_\d+\]\./,
    );
    const all = everything(spans);
    assert.ok(!all.includes(EMAIL), 'the raw email is in no span');
    assert.ok(!all.includes(PHONE), 'the raw phone number is in no span');
  });
});
