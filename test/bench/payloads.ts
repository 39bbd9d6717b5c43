/**
 * Realistic OpenAI traffic, built once before measuring so the driver's loop only reuses
 * Buffers and header lists.
 */
import type { HeaderList } from '../../operator/envoy-sim/ext-proc/index.js';
import type { Payload } from './scenarios.js';

const PROSE = [
  'The quarterly report shows revenue growth in every region except the north-east,',
  'where two large customers renewed late and one moved its spend to the next fiscal year.',
  'Please summarise the main drivers, list the risks the finance team flagged, and suggest',
  'three questions the board is likely to ask about the forecast for the coming quarter.',
  'Keep the tone neutral, avoid jargon, and cite the section of the report for each point.',
  'Our support backlog grew by eleven percent after the release; most tickets concern the',
  'new billing page, the export to spreadsheet feature and a slow search on large accounts.',
].join(' ');

function prose(chars: number, offset: number): string {
  let s = '';
  let i = offset % PROSE.length;
  while (s.length < chars) {
    const take = Math.min(chars - s.length, PROSE.length - i);
    s += PROSE.slice(i, i + take);
    i = 0;
    if (s.length < chars) s += ' ';
  }
  return s;
}

/**
 * Personal data as users paste it into a prompt: one finding for each of four built-in
 * detectors (EMAIL, PHONE, IBAN, CREDIT_CARD), inside ordinary prose. All fictitious; the card
 * number is a well-known test number that passes the Luhn check.
 */
export const PII_TURN =
  'Please draft a reply to Dana Whitfield (dana.whitfield@example.org, +1 415 555 0142) ' +
  'confirming the refund to IBAN DE89 3704 0044 0532 0130 00 and that the card ' +
  '4111 1111 1111 1111 on file will no longer be charged.';

export interface ChatRequestOptions {
  stream?: boolean;
  model?: string;
  /** Adds PII_TURN as the first user turn, so masking has something to replace. */
  pii?: boolean;
}

/**
 * The placeholder every request body built here carries at the end of its last user turn, which
 * the replaying drivers (the Worker in scenarios.ts, the Go loadgen through the spec
 * latency.ts writes) overwrite per request with that request's sequence number
 * (`sequenceText`, the same width). Why: the extproc caches per-text results by a hash of the
 * text (token counts, extproc/usage/text-counts.ts; the prompt guard's scores,
 * extproc/guard/recent-scores.ts). A real conversation resends its history every turn, so those
 * texts hit, but its last user turn is new; replaying one byte-identical body would make every
 * text a hit after the first request and flatter every exchange that counts or scores. Lowercase
 * letters only, in the marker and in the numbers that replace it: digits could be read as a phone
 * or card number by the masking detectors and change what the masking exchanges measure.
 */
export const SEQUENCE_MARKER = 'zqxsequencez';

const SEQUENCE_WIDTH = SEQUENCE_MARKER.length;
const SEQUENCE_DIGITS = 'abcdefghijklmnopqrstuvwxyz';

/**
 * `seq` as SEQUENCE_WIDTH letters, most significant first, 'a' for zero (base 26): every safe
 * integer fits (26^12 > 2^53). The Go loadgen's sequenceText encodes the same way.
 */
export function sequenceText(seq: number): string {
  if (!Number.isSafeInteger(seq) || seq < 0) throw new RangeError(`sequence ${seq}`);
  const out = new Array<string>(SEQUENCE_WIDTH);
  for (let i = SEQUENCE_WIDTH - 1; i >= 0; i--) {
    out[i] = SEQUENCE_DIGITS[seq % 26]!;
    seq = Math.floor(seq / 26);
  }
  return out.join('');
}

/** Where the marker sits in `body`; undefined without one. More than one is a bug here. */
export function sequenceOffset(body: Buffer): number | undefined {
  const at = body.indexOf(SEQUENCE_MARKER, 0, 'latin1');
  if (at < 0) return undefined;
  if (body.indexOf(SEQUENCE_MARKER, at + 1, 'latin1') >= 0) {
    throw new Error('the request body carries the sequence marker more than once');
  }
  return at;
}

/** A copy of `body` with sequence number `seq` in place of the marker at `at`. */
export function withSequence(body: Buffer, at: number, seq: number): Buffer {
  const out = Buffer.allocUnsafe(body.length);
  body.copy(out);
  out.write(sequenceText(seq), at, SEQUENCE_WIDTH, 'latin1');
  return out;
}

/**
 * A chat completion request of about `bytes` bytes: a system prompt and a conversation whose
 * turns carry plain prose, as a typical assistant integration sends it. Its last user turn ends
 * with SEQUENCE_MARKER in place of the prose's last characters (the length is the same).
 */
export function chatRequestBody(bytes: number, opts: ChatRequestOptions = {}): Buffer {
  const body: Record<string, unknown> = {
    model: opts.model ?? 'gpt-4o-mini',
    messages: [] as { role: string; content: string }[],
    temperature: 0.2,
    max_tokens: 512,
    user: 'user-4821',
  };
  if (opts.stream) body.stream = true;
  const messages = body.messages as { role: string; content: string }[];
  messages.push({
    role: 'system',
    content: 'You are a concise assistant for an operations team. Answer in English.',
  });
  if (opts.pii) messages.push({ role: 'user', content: PII_TURN });
  let turn = opts.pii ? 1 : 0;
  for (let size = JSON.stringify(body).length; size < bytes; size = JSON.stringify(body).length) {
    const left = bytes - size - 40;
    messages.push({
      role: turn % 2 === 0 ? 'user' : 'assistant',
      content: prose(Math.max(20, Math.min(700, left)), turn * 97),
    });
    turn++;
  }
  // A request ends with the user's new turn, at full length (a new question is rarely a few
  // words, and the extproc's per-text caches skip texts under 64 characters, so a short one
  // would prove nothing): the short remainder that brings the body to `bytes` moves to the
  // front of the history, and the roles alternate back from a last user turn.
  const history = messages.splice(opts.pii ? 2 : 1);
  if (history.length > 1) history.unshift(history.pop()!);
  history.forEach((m, i) => (m.role = (history.length - 1 - i) % 2 === 0 ? 'user' : 'assistant'));
  messages.push(...history);
  const last = messages.findLast((m) => m.role === 'user');
  if (!last) throw new Error(`a ${bytes}-byte chat request has no room for a user turn`);
  last.content = `${last.content.slice(0, -(SEQUENCE_WIDTH + 1))} ${SEQUENCE_MARKER}`;
  return Buffer.from(JSON.stringify(body));
}

export function chatResponseBody(): Buffer {
  return Buffer.from(
    JSON.stringify({
      id: 'chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT',
      object: 'chat.completion',
      created: 1741569952,
      model: 'gpt-4o-mini-2024-07-18',
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: prose(600, 13), refusal: null },
          logprobs: null,
          finish_reason: 'stop',
        },
      ],
      usage: {
        prompt_tokens: 512,
        completion_tokens: 128,
        total_tokens: 640,
        prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
        completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0 },
      },
      service_tier: 'default',
      system_fingerprint: 'fp_06737a9306',
    }),
  );
}

/**
 * A `count`-chunk OpenAI chat stream as a provider sends it when usage was requested: a role
 * chunk, content deltas, a finish chunk, the usage chunk (choices: []) and [DONE]; one SSE
 * event per chunk, as providers flush them.
 */
export function sseChunks(count: number): Buffer[] {
  const base = {
    id: 'chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT',
    object: 'chat.completion.chunk',
    created: 1741569952,
    model: 'gpt-4o-mini-2024-07-18',
    service_tier: 'default',
    system_fingerprint: 'fp_06737a9306',
  };
  const event = (o: object): Buffer =>
    Buffer.from(`data: ${JSON.stringify({ ...base, ...o })}\n\n`);
  const words = PROSE.split(' ');
  const out: Buffer[] = [
    event({
      choices: [
        {
          index: 0,
          delta: { role: 'assistant', content: '', refusal: null },
          logprobs: null,
          finish_reason: null,
        },
      ],
    }),
  ];
  const contentChunks = count - 4;
  for (let i = 0; i < contentChunks; i++) {
    out.push(
      event({
        choices: [
          {
            index: 0,
            delta: { content: (i === 0 ? '' : ' ') + words[i % words.length]! },
            logprobs: null,
            finish_reason: null,
          },
        ],
      }),
    );
  }
  out.push(event({ choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }] }));
  out.push(
    event({
      choices: [],
      usage: {
        prompt_tokens: 512,
        completion_tokens: contentChunks,
        total_tokens: 512 + contentChunks,
        prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
        completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0 },
      },
    }),
  );
  out.push(Buffer.from('data: [DONE]\n\n'));
  return out;
}

/** The caller's virtual key; the policy scenario's consumer is known by its sha256 digest. */
export const VIRTUAL_KEY = 'sk-virtual-team-analytics-000000000000000000000000';

export function requestHeaders(body: Buffer): HeaderList {
  return [
    [':method', 'POST'],
    [':path', '/v1/chat/completions'],
    [':scheme', 'https'],
    [':authority', 'ai-gateway.internal.example.com'],
    ['content-type', 'application/json'],
    ['content-length', String(body.length)],
    ['authorization', `Bearer ${VIRTUAL_KEY}`],
    ['accept', 'application/json'],
    ['user-agent', 'OpenAI/Python 1.54.4'],
    ['x-stainless-lang', 'python'],
    ['x-stainless-package-version', '1.54.4'],
    ['x-forwarded-for', '10.12.4.17'],
    ['x-forwarded-proto', 'https'],
    ['x-request-id', '0b7a3e4c-7f4e-4a4b-9a53-3f8d6e1b2c9d'],
  ];
}

export function jsonResponseHeaders(body: Buffer): HeaderList {
  return [
    [':status', '200'],
    ['content-type', 'application/json'],
    ['content-length', String(body.length)],
    ['openai-processing-ms', '812'],
    ['openai-version', '2020-10-01'],
    ['x-request-id', 'req_5f1f7f0a2b8c4d2e9e1f0a6b7c8d9e0f'],
    ['x-ratelimit-remaining-tokens', '149488'],
  ];
}

export function sseResponseHeaders(): HeaderList {
  return [
    [':status', '200'],
    ['content-type', 'text/event-stream; charset=utf-8'],
    ['openai-processing-ms', '214'],
    ['openai-version', '2020-10-01'],
    ['x-request-id', 'req_0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b'],
  ];
}

/**
 * A whole chat exchange: a request of about `bytes` bytes and a buffered JSON answer. The
 * drivers that replay it give every request its own last user turn (SEQUENCE_MARKER above): the
 * extproc's per-text caches would otherwise hit on every text after the first request, which no
 * real conversation does, and the figures of the counting and scoring exchanges would be too good.
 */
export function chatPayload(
  bytes: number,
  opts: ChatRequestOptions = {},
  upstream = true,
): Payload {
  const body = chatRequestBody(bytes, opts);
  const res = chatResponseBody();
  return {
    reqHeaders: requestHeaders(body),
    reqBody: body,
    resHeaders: jsonResponseHeaders(res),
    resChunks: [res],
    sse: false,
    upstream,
  };
}
