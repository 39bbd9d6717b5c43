/**
 * What the cloud translators cost, per (caller API × backend API) pair: the request translated
 * (µs/op: the caller's parsed body → the backend's path, headers and body bytes), the answer
 * translated back (µs/op: a whole JSON answer of ~1 KB of text, or an embeddings list), and a
 * 200-event stream in the backend's framing (AWS event stream, Gemini SSE, Anthropic SSE) fed in
 * 1,400-byte network chunks (µs/stream). Each figure is next to a floor measured in the same run:
 * requests against writing the caller's body out once (JSON.stringify: the least any rewrite of
 * it costs; the same-API pair, which leaves it untouched, is shown too), answers against
 * JSON.parse of the same bytes (the least any reading of them costs); streams per event. Plus
 * SigV4 signing of one
 * attempt (static keys), which every Bedrock call adds. In-process, single-threaded, pure
 * translator calls: the ext_proc messages around them are timed by the scenarios section.
 *
 *   npx tsx test/bench/cloud.ts        (or BENCH_ONLY=cloud npm run bench)
 *
 * Environment: BENCH_CLOUD_ROUNDS scales the timed loops (default 1).
 */
import { EventStreamCodec } from '@smithy/core/event-streams';
import type { ResolvedBackend } from '../../extproc/config/runtime.js';
import { AwsSigning } from '../../extproc/providers/aws-sigv4.js';
import { anthropicToAnthropicVertex } from '../../extproc/providers/anthropic-to-anthropic-vertex.js';
import { anthropicToBedrock } from '../../extproc/providers/anthropic-to-bedrock.js';
import { anthropicToGemini } from '../../extproc/providers/anthropic-to-gemini.js';
import { openaiToAnthropicVertex } from '../../extproc/providers/openai-to-anthropic-vertex.js';
import { openaiToBedrockEmbeddings } from '../../extproc/providers/openai-to-bedrock-embeddings.js';
import { openaiToBedrock } from '../../extproc/providers/openai-to-bedrock.js';
import { openaiToGeminiEmbeddings } from '../../extproc/providers/openai-to-gemini-embeddings.js';
import { openaiToGemini } from '../../extproc/providers/openai-to-gemini.js';
import { openaiToOpenai } from '../../extproc/providers/openai-to-openai.js';
import type { ExchangeRequest, Translator } from '../../extproc/providers/translator.js';
import { chatRequestBody } from './payloads.js';
import { table } from './stats.js';

const ROUNDS = Number(process.env.BENCH_CLOUD_ROUNDS ?? 1) || 1;
const CTX = { created: 1_700_000_000, maxEventBytes: 1 << 20 };
const TEXT = 'The quick brown fox jumps over the lazy dog, and then it naps in the sun. ';

function backend(provider: ResolvedBackend['provider'], over: Partial<ResolvedBackend>) {
  return { name: 'b', cluster: 'c', credential: 'k', provider, ...over } as ResolvedBackend;
}
const OPENAI = backend('openai', { pathPrefix: '/v1' });
const BEDROCK = backend('aws-bedrock', {
  modelOverride: 'anthropic.claude-3-haiku-20240307-v1:0',
  aws: { region: 'us-east-1' },
});
const INVOKE = { ...BEDROCK, aws: { region: 'us-east-1', anthropicInvoke: true } };
const GEMINI = backend('gemini', { modelOverride: 'gemini-2.5-flash' });
const VERTEX_CLAUDE = backend('gcp-vertex', {
  modelOverride: 'claude-sonnet-4@20250514',
  gcp: { project: 'p', region: 'us-east5', publisher: 'anthropic' },
});

// ---- requests -------------------------------------------------------------------------------

const openaiBody = (stream: boolean): Record<string, unknown> =>
  JSON.parse(chatRequestBody(2048, { stream }).toString('utf8')) as Record<string, unknown>;

function anthropicBody(stream: boolean): Record<string, unknown> {
  const o = openaiBody(stream);
  const msgs = o.messages as { role: string; content: string }[];
  return {
    model: 'claude-x',
    max_tokens: 512,
    system: msgs[0]!.content,
    messages: msgs.slice(1),
    ...(stream ? { stream: true } : {}),
  };
}

function req(api: 'openai' | 'anthropic', body: Record<string, unknown>): ExchangeRequest {
  return {
    api,
    operation: api === 'openai' ? 'chat' : 'messages',
    model: String(body.model),
    body,
    stream: body.stream === true,
    forcedUsage: false,
  };
}

const EMBED_TEXTS = Array.from({ length: 8 }, (_, i) => TEXT.repeat(3) + String(i));
const embedReq = (input: string | string[]): ExchangeRequest => ({
  api: 'openai',
  operation: 'embeddings',
  model: 'e',
  body: { model: 'e', input, encoding_format: 'base64' },
  stream: false,
  forcedUsage: false,
});

// ---- answers in each backend's format -------------------------------------------------------

const ANSWER = TEXT.repeat(12);
const WORDS = Array.from({ length: 200 }, (_, i) => `word${i} `);
/** Every stream carries the 200 text deltas and 4–6 framing events. */
const STREAM_EVENTS = 205;
const chunked = (all: Buffer): Buffer[] => {
  const out: Buffer[] = [];
  for (let i = 0; i < all.length; i += 1400) out.push(all.subarray(i, i + 1400));
  return out;
};

const converseJson = Buffer.from(
  JSON.stringify({
    output: { message: { role: 'assistant', content: [{ text: ANSWER }] } },
    stopReason: 'end_turn',
    usage: { inputTokens: 500, outputTokens: 180, totalTokens: 680 },
    metrics: { latencyMs: 1 },
  }),
);
const CODEC = new EventStreamCodec(
  (b) => Buffer.from(b).toString('utf8'),
  (s) => Buffer.from(s, 'utf8'),
);
const frame = (type: string, payload: unknown): Uint8Array =>
  CODEC.encode({
    headers: {
      ':event-type': { type: 'string', value: type },
      ':content-type': { type: 'string', value: 'application/json' },
      ':message-type': { type: 'string', value: 'event' },
    },
    body: Buffer.from(JSON.stringify(payload)),
  });
const converseStream = chunked(
  Buffer.concat([
    frame('messageStart', { role: 'assistant' }),
    ...WORDS.map((w) => frame('contentBlockDelta', { contentBlockIndex: 0, delta: { text: w } })),
    frame('contentBlockStop', { contentBlockIndex: 0 }),
    frame('messageStop', { stopReason: 'end_turn' }),
    frame('metadata', { usage: { inputTokens: 500, outputTokens: 200, totalTokens: 700 } }),
  ]),
);
const ev = (type: string, d: object): string =>
  `event: ${type}\ndata: ${JSON.stringify({ type, ...d })}\n\n`;
const anthropicEvents = [
  {
    type: 'message_start',
    message: { id: 'msg_1', model: 'claude', usage: { input_tokens: 500, output_tokens: 1 } },
  },
  { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
  ...WORDS.map((w) => ({
    type: 'content_block_delta',
    index: 0,
    delta: { type: 'text_delta', text: w },
  })),
  { type: 'content_block_stop', index: 0 },
  { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 200 } },
  { type: 'message_stop' },
];
const anthropicSse = chunked(
  Buffer.from(anthropicEvents.map(({ type, ...d }) => ev(type, d)).join('')),
);
const invokeStream = chunked(
  Buffer.concat(
    anthropicEvents.map((e) =>
      frame('chunk', { bytes: Buffer.from(JSON.stringify(e)).toString('base64') }),
    ),
  ),
);
const anthropicJson = Buffer.from(
  JSON.stringify({
    id: 'msg_1',
    type: 'message',
    role: 'assistant',
    model: 'claude',
    content: [{ type: 'text', text: ANSWER }],
    stop_reason: 'end_turn',
    usage: { input_tokens: 500, output_tokens: 180 },
  }),
);
const geminiChunk = (text: string, last: boolean): Record<string, unknown> => ({
  candidates: [
    {
      content: { parts: [{ text }], role: 'model' },
      ...(last ? { finishReason: 'STOP' } : {}),
      index: 0,
    },
  ],
  ...(last
    ? { usageMetadata: { promptTokenCount: 500, candidatesTokenCount: 200, totalTokenCount: 700 } }
    : {}),
  modelVersion: 'gemini-2.5-flash',
  responseId: 'r1',
});
const geminiJson = Buffer.from(JSON.stringify(geminiChunk(ANSWER, true)));
const geminiSse = chunked(
  Buffer.from(
    WORDS.map(
      (w, i) => `data: ${JSON.stringify(geminiChunk(w, i === WORDS.length - 1))}\r\n\r\n`,
    ).join(''),
  ),
);
const vec = (n: number): number[] => Array.from({ length: n }, (_, i) => Math.sin(i) / 3);
const titanJson = Buffer.from(JSON.stringify({ embedding: vec(1024), inputTextTokenCount: 40 }));
const cohereJson = Buffer.from(
  JSON.stringify({
    id: 'x',
    embeddings: { float: EMBED_TEXTS.map(() => vec(1024)) },
    response_type: 'embeddings_by_type',
  }),
);
const batchJson = Buffer.from(
  JSON.stringify({ embeddings: EMBED_TEXTS.map(() => ({ values: vec(768) })) }),
);
const predictJson = Buffer.from(
  JSON.stringify({
    predictions: EMBED_TEXTS.map(() => ({
      embeddings: { values: vec(768), statistics: { token_count: 40, truncated: false } },
    })),
  }),
);

// ---- timing ---------------------------------------------------------------------------------

/** CPU µs per call of fn, after a warm-up of a fifth as many. */
function time(n: number, fn: () => unknown): number {
  const runs = Math.max(20, Math.round(n * ROUNDS));
  for (let i = 0; i < runs / 5; i++) fn();
  const start = process.cpuUsage();
  for (let i = 0; i < runs; i++) fn();
  const used = process.cpuUsage(start);
  return (used.user + used.system) / runs;
}

const HEADERS_JSON = new Map([['content-type', 'application/json']]);
const streamHeaders = (type: string) => new Map([['content-type', type]]);

interface Pair {
  name: string;
  t: Translator;
  backend: ResolvedBackend;
  request: ExchangeRequest;
  json?: Buffer;
  stream?: { chunks: Buffer[]; type: string; request: ExchangeRequest };
}

const pairs: Pair[] = [
  {
    name: 'OpenAI → Bedrock Converse',
    t: openaiToBedrock,
    backend: BEDROCK,
    request: req('openai', openaiBody(false)),
    json: converseJson,
    stream: {
      chunks: converseStream,
      type: 'application/vnd.amazon.eventstream',
      request: req('openai', openaiBody(true)),
    },
  },
  {
    name: 'Anthropic → Bedrock Converse',
    t: anthropicToBedrock,
    backend: BEDROCK,
    request: req('anthropic', anthropicBody(false)),
    json: converseJson,
    stream: {
      chunks: converseStream,
      type: 'application/vnd.amazon.eventstream',
      request: req('anthropic', anthropicBody(true)),
    },
  },
  {
    name: 'Anthropic → Bedrock InvokeModel',
    t: anthropicToBedrock,
    backend: INVOKE,
    request: req('anthropic', anthropicBody(false)),
    json: anthropicJson,
    stream: {
      chunks: invokeStream,
      type: 'application/vnd.amazon.eventstream',
      request: req('anthropic', anthropicBody(true)),
    },
  },
  {
    name: 'OpenAI → Gemini',
    t: openaiToGemini,
    backend: GEMINI,
    request: req('openai', openaiBody(false)),
    json: geminiJson,
    stream: {
      chunks: geminiSse,
      type: 'text/event-stream',
      request: req('openai', openaiBody(true)),
    },
  },
  {
    name: 'Anthropic → Gemini',
    t: anthropicToGemini,
    backend: GEMINI,
    request: req('anthropic', anthropicBody(false)),
    json: geminiJson,
    stream: {
      chunks: geminiSse,
      type: 'text/event-stream',
      request: req('anthropic', anthropicBody(true)),
    },
  },
  {
    name: 'OpenAI → Claude on Vertex',
    t: openaiToAnthropicVertex,
    backend: VERTEX_CLAUDE,
    request: req('openai', openaiBody(false)),
    json: anthropicJson,
    stream: {
      chunks: anthropicSse,
      type: 'text/event-stream',
      request: req('openai', openaiBody(true)),
    },
  },
  // The answer passes unread (`none`): only the request is translated.
  {
    name: 'Anthropic → Claude on Vertex',
    t: anthropicToAnthropicVertex,
    backend: VERTEX_CLAUDE,
    request: req('anthropic', anthropicBody(false)),
  },
  {
    name: 'embeddings → Titan (1×1024, base64)',
    t: openaiToBedrockEmbeddings,
    backend: { ...BEDROCK, modelOverride: 'amazon.titan-embed-text-v2:0' },
    request: embedReq(EMBED_TEXTS[0]!),
    json: titanJson,
  },
  {
    name: 'embeddings → Cohere (8×1024, base64)',
    t: openaiToBedrockEmbeddings,
    backend: { ...BEDROCK, modelOverride: 'cohere.embed-english-v3' },
    request: embedReq(EMBED_TEXTS),
    json: cohereJson,
  },
  {
    name: 'embeddings → Gemini API (8×768, base64)',
    t: openaiToGeminiEmbeddings,
    backend: { ...GEMINI, modelOverride: 'gemini-embedding-001' },
    request: embedReq(EMBED_TEXTS),
    json: batchJson,
  },
  {
    name: 'embeddings → Vertex predict (8×768, base64)',
    t: openaiToGeminiEmbeddings,
    backend: backend('gcp-vertex', {
      modelOverride: 'text-embedding-005',
      gcp: { project: 'p', region: 'us-central1' },
    }),
    request: embedReq(EMBED_TEXTS),
    json: predictJson,
  },
];

const floorReq = req('openai', openaiBody(false));
const sameApi = time(20_000, () => openaiToOpenai.request(floorReq, OPENAI));
// The least a request that is rewritten at all costs: its body written out once.
const floorRequest = time(20_000, () => Buffer.from(JSON.stringify(floorReq.body), 'utf8'));
const rows: string[][] = [
  [
    'OpenAI → OpenAI (same API, body untouched)',
    sameApi.toFixed(1),
    (sameApi / floorRequest).toFixed(1),
    '-',
    '-',
    '-',
    '-',
  ],
  ['floor: the 2 KB body JSON.stringify-ed', floorRequest.toFixed(1), '1.0', '-', '-', '-', '-'],
];
for (const p of pairs) {
  const r = time(10_000, () => p.t.request(p.request, p.backend));
  let jsonCells = ['-', '-'];
  if (p.json) {
    const json = p.json;
    const floor = time(10_000, () => JSON.parse(json.toString('utf8')));
    const us = time(5_000, () => {
      const rt = p.t.response(p.request, p.backend, CTX)!;
      rt.headers(200, HEADERS_JSON);
      return rt.json(json);
    });
    jsonCells = [us.toFixed(1), (us / floor).toFixed(1)];
  }
  let streamCells = ['-', '-'];
  if (p.stream) {
    const s = p.stream;
    const us = time(500, () => {
      const rt = p.t.response(s.request, p.backend, CTX)!;
      rt.headers(200, streamHeaders(s.type));
      s.chunks.forEach((c, i) => rt.stream(c, i === s.chunks.length - 1));
    });
    streamCells = [us.toFixed(0), (us / STREAM_EVENTS).toFixed(2)];
  }
  rows.push([p.name, r.toFixed(1), (r / floorRequest).toFixed(1), ...jsonCells, ...streamCells]);
}
console.log(
  table(
    ['pair', 'request µs', '× floor', 'answer µs', '× JSON.parse', 'stream µs', 'µs/event'],
    rows,
  ),
);

const signing = new AwsSigning({});
const signBody = openaiToBedrock.request(req('openai', openaiBody(false)), BEDROCK).body!;
const creds = {
  ...BEDROCK,
  credential: '[default]\naws_access_key_id = AKIDBENCH\naws_secret_access_key = bench/secret\n',
};
const sign = (): Promise<unknown> =>
  signing.headers(
    creds,
    {
      method: 'POST',
      authority: 'bedrock-runtime.us-east-1.amazonaws.com',
      path: '/model/m/converse',
      body: signBody,
    },
    Date.now(),
  );
for (let i = 0; i < 200; i++) await sign();
const runs = Math.max(200, Math.round(2000 * ROUNDS));
const start = process.cpuUsage();
for (let i = 0; i < runs; i++) await sign();
const used = process.cpuUsage(start);
console.log(
  table(
    ['credential, per attempt', 'CPU µs'],
    [
      [
        `SigV4 (static keys, ${signBody.length} B body)`,
        ((used.user + used.system) / runs).toFixed(1),
      ],
    ],
  ),
);
signing.close();
