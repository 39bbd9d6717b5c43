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
 * A chat completion request of about `bytes` bytes: a system prompt and a conversation whose
 * turns carry plain prose, as a typical assistant integration sends it.
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

/** A whole chat exchange: a request of about `bytes` bytes and a buffered JSON answer. */
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
