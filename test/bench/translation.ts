/**
 * What translation between the caller's API and the backend's adds, in CPU per exchange: the
 * upstream phase of a translated exchange (request translated, response headers, then the answer
 * translated back — a whole JSON body, or a 200-event stream fed in network-sized chunks that cut
 * events anywhere) against the same exchange to a backend of the caller's own API (request shaped,
 * nothing on the way back). In-process and single-threaded, on the UpstreamExchange the extproc
 * runs; the ext_proc messages a translated exchange adds (its response headers, and the body in
 * one message or one per chunk) are counted, not timed here — the scenarios section times what a
 * message costs over gRPC. `npm run bench` includes it; alone:
 *
 *   npx tsx test/bench/translation.ts
 *
 * Environment: BENCH_TRANSLATION_ROUNDS scales the timed loops (default 1).
 */
import { ExtprocConfig } from '../../extproc/config/contract.js';
import { RuntimeConfig } from '../../extproc/config/runtime.js';
import { RequestStore, type RequestState } from '../../extproc/pipeline/request-store.js';
import { UpstreamExchange } from '../../extproc/pipeline/upstream.js';
import { body, clusterAttributes, headers } from '../support/messages.js';
import { chatRequestBody } from './payloads.js';
import { table } from './stats.js';

const ROUNDS = Number(process.env.BENCH_TRANSLATION_ROUNDS ?? 1) || 1;

const config = new RuntimeConfig(
  ExtprocConfig.parse({
    apiVersion: 'sluice.dev/extproc/v1',
    kind: 'ExtprocConfig',
    backends: [
      { name: 'openai', cluster: 'c-openai', provider: 'openai', credential: { value: 'x' } },
      { name: 'claude', cluster: 'c-claude', provider: 'anthropic', credential: { value: 'x' } },
    ],
    routes: [
      {
        name: 'r',
        models: [{ prefix: 'g' }, { prefix: 'c' }],
        backends: [{ name: 'openai' }, { name: 'claude' }],
      },
    ],
  }),
  new Map([
    ['openai', 'sk-o'],
    ['claude', 'sk-a'],
  ]),
);

/** An Anthropic answer of about the size of the 2 KB request's reply. */
const WORDS = 'The quick brown fox jumps over the lazy dog, and then it naps in the sun. ';
function anthropicJson(): Buffer {
  return Buffer.from(
    JSON.stringify({
      id: 'msg_1',
      type: 'message',
      role: 'assistant',
      model: 'claude-x',
      content: [{ type: 'text', text: WORDS.repeat(12) }],
      stop_reason: 'end_turn',
      stop_sequence: null,
      usage: { input_tokens: 500, output_tokens: 180 },
    }),
  );
}

/** 200 text deltas as Anthropic streams them, cut into 1,400-byte network chunks. */
function anthropicStream(): Buffer[] {
  const ev = (type: string, d: object) =>
    `event: ${type}\ndata: ${JSON.stringify({ type, ...d })}\n\n`;
  let s = ev('message_start', {
    message: {
      id: 'msg_1',
      type: 'message',
      role: 'assistant',
      model: 'claude-x',
      content: [],
      usage: { input_tokens: 500, output_tokens: 1 },
    },
  });
  s += ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
  for (let i = 0; i < 200; i++)
    s += ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: `word${i} ` } });
  s += ev('content_block_stop', { index: 0 });
  s += ev('message_delta', { delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 200 } });
  s += ev('message_stop', {});
  const all = Buffer.from(s);
  const out: Buffer[] = [];
  for (let i = 0; i < all.length; i += 1400) out.push(all.subarray(i, i + 1400));
  return out;
}

function state(stream: boolean): RequestState {
  const b = JSON.parse(chatRequestBody(2048, { stream }).toString('utf8')) as Record<
    string,
    unknown
  >;
  return {
    id: 'req',
    api: 'openai',
    operation: 'chat',
    model: String(b.model),
    routeName: 'r',
    body: b,
    rawBody: Buffer.from(JSON.stringify(b)),
    stream,
    forcedUsage: stream,
    attempts: [],
    createdAt: 0,
  };
}

const REQUEST = headers({
  ':method': 'POST',
  ':path': '/v1/chat/completions',
  'x-sluice-request-id': 'req',
  'content-type': 'application/json',
});

/** One exchange's upstream phase; returns the number of response messages it processed. */
async function exchange(
  store: RequestStore,
  cluster: string,
  stream: boolean,
  json: Buffer,
  chunks: Buffer[],
): Promise<number> {
  store.put(state(stream));
  const ex = new UpstreamExchange({ config, store, wallNow: () => 0 });
  const o = await ex.requestHeaders(REQUEST, clusterAttributes(cluster));
  const on = o.kind === 'continue' && o.mutation?.modeOverride?.responseHeader === 'SEND';
  if (!on) return 0;
  ex.responseHeaders(
    headers({
      ':status': '200',
      'content-type': stream ? 'text/event-stream' : 'application/json',
    }),
  );
  if (!stream) {
    await ex.responseBody(body(json));
    return 2;
  }
  for (let i = 0; i < chunks.length; i++)
    await ex.responseBody(body(chunks[i]!, i === chunks.length - 1));
  return 1 + chunks.length;
}

async function measure(
  cluster: string,
  stream: boolean,
): Promise<{ us: number; messages: number }> {
  const store = new RequestStore(() => 0);
  const json = anthropicJson();
  const chunks = anthropicStream();
  const n = Math.max(50, Math.round((stream ? 2000 : 20000) * ROUNDS));
  for (let i = 0; i < n / 5; i++) await exchange(store, cluster, stream, json, chunks);
  const start = process.cpuUsage();
  let messages = 0;
  for (let i = 0; i < n; i++) messages = await exchange(store, cluster, stream, json, chunks);
  const used = process.cpuUsage(start);
  store.close();
  return { us: (used.user + used.system) / n, messages };
}

const rows: string[][] = [];
for (const stream of [false, true]) {
  const same = await measure('c-openai', stream);
  const translated = await measure('c-claude', stream);
  const what = stream ? 'chat-2k, 200-event stream' : 'chat-2k, JSON answer';
  rows.push([`${what}: OpenAI → OpenAI`, same.us.toFixed(1), String(same.messages), '-']);
  rows.push([
    `${what}: OpenAI → Anthropic`,
    translated.us.toFixed(1),
    String(translated.messages),
    `+${(translated.us - same.us).toFixed(1)}`,
  ]);
}
console.log(table(['upstream phase, per exchange', 'CPU µs', 'extra messages', 'added µs'], rows));
