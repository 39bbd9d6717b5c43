/**
 * A mock AWS Bedrock runtime speaking the real wire format, for the e2e tier and the quickstart:
 * POST /model/{modelId}/converse (JSON) and /model/{modelId}/converse-stream (the AWS event-stream
 * binary framing, `application/vnd.amazon.eventstream`: messageStart, contentBlockStart/Delta/Stop,
 * messageStop, metadata frames, or an exception frame). test/e2e/mock-bedrock.test.ts points the
 * official `@aws-sdk/client-bedrock-runtime` at it: that is how we know the format is right.
 *
 * Embedding models answer through POST /model/{modelId}/invoke: Titan Text Embeddings and Cohere
 * Embed bodies, token counts in `x-amzn-bedrock-input-token-count` (test/e2e/mock-vertex.test.ts
 * sends them with the SDK's InvokeModel).
 *
 * Every request must carry a SigV4 signature that AWS's own signer (`@smithy/signature-v4`)
 * reproduces from the request as received — method, path, the signed headers, the body's SHA-256
 * — for the configured key, region and service, dated within 5 minutes; anything else is a 403 in
 * AWS's error shape (`{"message": …}` and `x-amzn-ErrorType`), as Bedrock answers.
 *
 * Scripting as the other mocks (operator/mock-provider/provider.ts): `enqueue` steps are used one
 * per request (content, usage, a tool call, an error status, a reset); `frameSplit` writes the
 * event stream in pieces of that many bytes, so frames reach the client cut mid-prelude and
 * mid-payload.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import {
  createServer as createH2cServer,
  type Http2ServerRequest,
  type Http2ServerResponse,
} from 'node:http2';
import type { AddressInfo } from 'node:net';
import { EventStreamCodec } from '@smithy/core/event-streams';
import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';
import type { Step } from './provider.js';

export interface BedrockCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface BedrockCaptured {
  method: string;
  path: string;
  /** The model id from the path, decoded. */
  model: string;
  stream: boolean;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  json: Record<string, unknown> | undefined;
  /** Whether the signature verified (refused requests are captured too). */
  signed: boolean;
}

export interface BedrockStep extends Step {
  /** Answer the stream with this exception frame after the first delta. */
  exception?: { type: string; message: string };
  /** The stop reason to report (default from the answer: end_turn, tool_use or max_tokens). */
  stopReason?: string;
}

export interface MockBedrockOptions {
  host?: string;
  port?: number;
  region?: string;
  credentials: BedrockCredentials;
  defaults?: BedrockStep;
  /** Write the event stream in pieces of this many bytes (default: one write per frame). */
  frameSplit?: number;
  /** Wall clock, for the signature's date check. */
  now?: () => number;
  /**
   * Serve HTTP/2 over cleartext (prior knowledge), as the AWS SDK's Bedrock Runtime client
   * speaks; HTTP/1.1 otherwise (what the Envoy emulator's upstream codec speaks).
   */
  h2c?: boolean;
}

type Req = IncomingMessage | Http2ServerRequest;
type Res = ServerResponse | Http2ServerResponse;

export interface MockBedrock {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly requests: BedrockCaptured[];
  enqueue(...steps: BedrockStep[]): void;
  take(): BedrockCaptured[];
  close(): Promise<void>;
}

const toUtf8 = (b: Uint8Array): string =>
  Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8');
const CODEC = new EventStreamCodec(toUtf8, (s) => Buffer.from(s, 'utf8'));
const MAX_SKEW_MS = 5 * 60_000;
const AUTH =
  /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([a-z0-9;:-]+), ?Signature=([0-9a-f]{64})$/;

function awsError(res: Res, status: number, type: string, message: string): void {
  const text = JSON.stringify({ message });
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'x-amzn-requestid': `mock-${Math.random().toString(16).slice(2)}`,
    'x-amzn-errortype': `${type}:http://internal.amazon.com/coral/com.amazon.bedrock/`,
  });
  res.end(text);
}

function header(req: Req, name: string): string | undefined {
  const v = req.headers[name] ?? (name === 'host' ? req.headers[':authority'] : undefined);
  return Array.isArray(v) ? v.join(',') : v;
}

function amzDate(s: string): Date | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s);
  if (!m) return undefined;
  return new Date(Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!));
}

/** Why the signature is refused, or undefined when AWS's signer reproduces it. */
async function verify(
  req: Req,
  body: Buffer,
  opts: MockBedrockOptions,
  region: string,
): Promise<{ type: string; message: string } | undefined> {
  const auth = header(req, 'authorization');
  if (!auth)
    return { type: 'MissingAuthenticationTokenException', message: 'Missing Authentication Token' };
  const m = AUTH.exec(auth);
  if (!m)
    return {
      type: 'IncompleteSignatureException',
      message: 'Authorization header requires Credential, SignedHeaders and Signature.',
    };
  const [, keyId, day, credRegion, service, signedList, signature] = m;
  const creds = opts.credentials;
  if (keyId !== creds.accessKeyId)
    return {
      type: 'UnrecognizedClientException',
      message: 'The security token included in the request is invalid.',
    };
  if (
    creds.sessionToken !== undefined &&
    header(req, 'x-amz-security-token') !== creds.sessionToken
  )
    return {
      type: 'UnrecognizedClientException',
      message: 'The security token included in the request is invalid.',
    };
  if (credRegion !== region || service !== 'bedrock')
    return {
      type: 'InvalidSignatureException',
      message: `Credential should be scoped to a valid region and service bedrock.`,
    };
  const date = amzDate(header(req, 'x-amz-date') ?? '');
  if (!date || !date.toISOString().replace(/-/g, '').startsWith(day!))
    return {
      type: 'IncompleteSignatureException',
      message: 'Date must be in ISO-8601 basic format and match the credential scope.',
    };
  const now = (opts.now ?? Date.now)();
  if (Math.abs(now - date.getTime()) > MAX_SKEW_MS)
    return {
      type: 'InvalidSignatureException',
      message: 'Signature expired: the request date is too far from the current time.',
    };
  // A declared payload hash is what the signature covers: it must be the body's.
  const declared = header(req, 'x-amz-content-sha256');
  if (
    declared !== undefined &&
    declared !== 'UNSIGNED-PAYLOAD' &&
    declared !== createHash('sha256').update(body).digest('hex')
  )
    return {
      type: 'InvalidSignatureException',
      message: 'The provided x-amz-content-sha256 header does not match what was computed.',
    };
  const signed = signedList!.split(';');
  // Over HTTP/2 the AWS SDK signs :authority in place of host.
  if (!signed.includes('host') && !signed.includes(':authority'))
    return { type: 'InvalidSignatureException', message: "'Host' must be a signed header." };
  const headers: Record<string, string> = {};
  for (const name of signed) {
    const v = header(req, name);
    if (v === undefined)
      return { type: 'InvalidSignatureException', message: `Signed header ${name} is missing.` };
    headers[name] = v;
  }
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const query: Record<string, string> = {};
  if (q >= 0) for (const [k, v] of new URLSearchParams(url.slice(q + 1))) query[k] = v;
  const signer = new SignatureV4({
    service: 'bedrock',
    region,
    credentials: creds,
    sha256: Hash.bind(null, 'sha256'),
  });
  const expected = await signer.sign(
    {
      method: req.method ?? 'POST',
      protocol: 'https:',
      hostname: headers.host ?? headers[':authority']!,
      path: q >= 0 ? url.slice(0, q) : url,
      query,
      headers,
      body,
    },
    { signingDate: date, signableHeaders: new Set(signed), unsignableHeaders: new Set() },
  );
  const got = /Signature=([0-9a-f]{64})$/.exec(String(expected.headers.authorization))?.[1] ?? '';
  const a = Buffer.from(got);
  const b = Buffer.from(signature!);
  if (a.length !== b.length || !timingSafeEqual(a, b))
    return {
      type: 'InvalidSignatureException',
      message:
        'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.',
    };
  return undefined;
}

function lastUserText(json: Record<string, unknown> | undefined): string {
  const msgs = Array.isArray(json?.messages)
    ? (json.messages as { role?: string; content?: unknown }[])
    : [];
  for (let i = msgs.length - 1; i >= 0; i--) {
    const m = msgs[i]!;
    if (m.role !== 'user') continue;
    // Converse content blocks, or an Anthropic body through InvokeModel (string or blocks).
    if (typeof m.content === 'string') return m.content;
    if (!Array.isArray(m.content)) continue;
    const text = (m.content as { text?: unknown }[])
      .map((b) => (typeof b.text === 'string' ? b.text : ''))
      .join('');
    if (text) return text;
  }
  return 'hello';
}

function words(text: string, chunkChars?: number): string[] {
  if (chunkChars !== undefined && chunkChars > 0) {
    const out: string[] = [];
    for (let i = 0; i < text.length; i += chunkChars) out.push(text.slice(i, i + chunkChars));
    return out.length > 0 ? out : [''];
  }
  return text.match(/\S+\s*|\s+/g) ?? [text];
}

function frame(type: string, payload: unknown): Uint8Array {
  return CODEC.encode({
    headers: {
      ':event-type': { type: 'string', value: type },
      ':content-type': { type: 'string', value: 'application/json' },
      ':message-type': { type: 'string', value: 'event' },
    },
    body: Buffer.from(JSON.stringify(payload), 'utf8'),
  });
}

function exceptionFrame(type: string, message: string): Uint8Array {
  return CODEC.encode({
    headers: {
      ':exception-type': { type: 'string', value: type },
      ':content-type': { type: 'string', value: 'application/json' },
      ':message-type': { type: 'string', value: 'exception' },
    },
    body: Buffer.from(JSON.stringify({ message }), 'utf8'),
  });
}

const sleep = (ms: number): Promise<void> =>
  ms > 0 ? new Promise((r) => setTimeout(r, ms)) : Promise.resolve();

/** Claude on Bedrock through InvokeModel: the Messages answer, or its events as `chunk` frames. */
async function invokeAnswer(
  res: Res,
  c: BedrockCaptured,
  a: {
    text: string;
    usage: { input: number; output: number };
    requestId: string;
    step: BedrockStep;
  },
): Promise<void> {
  const id = `msg_bdrk_${a.requestId.replace(/[^A-Za-z0-9]/g, '')}`;
  const usage = { input_tokens: a.usage.input, output_tokens: a.usage.output };
  if (!c.stream) {
    const out = JSON.stringify({
      id,
      type: 'message',
      role: 'assistant',
      model: c.model,
      content: [{ type: 'text', text: a.text }],
      stop_reason: 'end_turn',
      stop_sequence: null,
      usage,
    });
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(out),
      'x-amzn-requestid': a.requestId,
    });
    res.end(out);
    return;
  }
  res.writeHead(200, {
    'content-type': 'application/vnd.amazon.eventstream',
    'x-amzn-requestid': a.requestId,
  });
  const events: Record<string, unknown>[] = [
    {
      type: 'message_start',
      message: {
        id,
        type: 'message',
        role: 'assistant',
        model: c.model,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: { input_tokens: a.usage.input, output_tokens: 1 },
      },
    },
    { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
    ...words(a.text, a.step.chunkChars).map((w) => ({
      type: 'content_block_delta',
      index: 0,
      delta: { type: 'text_delta', text: w },
    })),
    { type: 'content_block_stop', index: 0 },
    {
      type: 'message_delta',
      delta: { stop_reason: 'end_turn', stop_sequence: null },
      usage: { output_tokens: a.usage.output },
    },
    {
      type: 'message_stop',
      'amazon-bedrock-invocationMetrics': {
        inputTokenCount: a.usage.input,
        outputTokenCount: a.usage.output,
        invocationLatency: 1,
        firstByteLatency: 1,
      },
    },
  ];
  for (const e of events) {
    const bytes = Buffer.from(JSON.stringify(e), 'utf8').toString('base64');
    (res as ServerResponse).write(frame('chunk', { bytes }));
    await sleep(a.step.chunkDelayMs ?? 0);
  }
  res.end();
}

/** A deterministic vector for a text: the same text always embeds the same (at most 16 long). */
export function mockEmbedding(text: string, dims: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < dims; i++) {
    const c = text.length > 0 ? text.charCodeAt(i % text.length) : 0;
    out.push(((c % 11) - 5) / 8);
  }
  return out;
}

/**
 * Embedding models through InvokeModel. Titan Text Embeddings: `{inputText, dimensions?,
 * normalize?}` → `{embedding, inputTextTokenCount, embeddingsByType}`. Cohere Embed: `{texts,
 * input_type, embedding_types?, output_dimension?}` → `{id, embeddings: {float: […]} | […],
 * response_type, texts}`. Both report the tokens read in `x-amzn-bedrock-input-token-count`.
 */
function embeddingAnswer(
  res: Res,
  model: string,
  json: Record<string, unknown> | undefined,
  step: BedrockStep,
): void {
  if (step.status && step.status >= 400)
    return awsError(
      res,
      step.status,
      step.status === 429 ? 'ThrottlingException' : 'ValidationException',
      `mock failure ${step.status}`,
    );
  const invalid = (message: string): void => awsError(res, 400, 'ValidationException', message);
  if (!json) return invalid('Malformed input request, please reformat your input and try again.');
  const count = (t: string): number => step.usage?.input ?? Math.max(1, words(t).length);
  let out: Record<string, unknown>;
  let tokens: number;
  if (/amazon\.titan-embed/.test(model)) {
    const extra = Object.keys(json).filter(
      (k) => !['inputText', 'dimensions', 'normalize', 'embeddingTypes'].includes(k),
    );
    if (extra.length > 0)
      return invalid(`Malformed input request: extraneous key [${extra[0]}] is not permitted`);
    if (typeof json.inputText !== 'string' || json.inputText.length === 0)
      return invalid('Malformed input request: inputText is required');
    const dims = typeof json.dimensions === 'number' ? json.dimensions : 1024;
    if (![256, 512, 1024].includes(dims))
      return invalid('Malformed input request: dimensions must be 256, 512 or 1024');
    const v = mockEmbedding(json.inputText, Math.min(dims, 16));
    tokens = count(json.inputText);
    out = { embedding: v, embeddingsByType: { float: v }, inputTextTokenCount: tokens };
  } else {
    const texts = json.texts;
    if (!Array.isArray(texts) || texts.length === 0 || !texts.every((t) => typeof t === 'string'))
      return invalid('Malformed input request: texts is required');
    if (
      typeof json.input_type !== 'string' ||
      !['search_document', 'search_query', 'classification', 'clustering'].includes(json.input_type)
    )
      return invalid('Malformed input request: input_type is required');
    if ('output_dimension' in json && !/embed-v4/.test(model))
      return invalid('Malformed input request: extraneous key [output_dimension] is not permitted');
    const dims = typeof json.output_dimension === 'number' ? json.output_dimension : 8;
    const vectors = texts.map((t) => mockEmbedding(t, Math.min(dims, 16)));
    tokens = texts.reduce((n, t) => n + count(t), 0);
    const byType = Array.isArray(json.embedding_types);
    out = {
      id: `mock-embed-${model.length}`,
      embeddings: byType ? { float: vectors } : vectors,
      response_type: byType ? 'embeddings_by_type' : 'embeddings_floats',
      texts,
    };
  }
  const text = JSON.stringify(out);
  res.writeHead(200, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'x-amzn-bedrock-input-token-count': String(tokens),
  });
  res.end(text);
}

export async function startMockBedrock(opts: MockBedrockOptions): Promise<MockBedrock> {
  const requests: BedrockCaptured[] = [];
  const queue: BedrockStep[] = [];
  const host = opts.host ?? '127.0.0.1';
  const region = opts.region ?? 'us-east-1';
  const onRequest = (req: Req, res: Res): void => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void handle(req, Buffer.concat(chunks), res).catch(() => res.destroy());
    });
  };
  const server = opts.h2c ? createH2cServer(onRequest) : createServer(onRequest);

  async function handle(req: Req, body: Buffer, res: Res): Promise<void> {
    const url = req.url ?? '/';
    const route =
      /\/model\/([^/]+)\/(converse|converse-stream|invoke|invoke-with-response-stream)$/.exec(
        url.split('?')[0]!,
      );
    const invoke = route?.[2] === 'invoke' || route?.[2] === 'invoke-with-response-stream';
    let json: Record<string, unknown> | undefined;
    try {
      const v: unknown = JSON.parse(body.toString('utf8'));
      if (typeof v === 'object' && v !== null && !Array.isArray(v))
        json = v as Record<string, unknown>;
    } catch {
      json = undefined;
    }
    const refusal = await verify(req, body, opts, region);
    const captured: BedrockCaptured = {
      method: req.method ?? '',
      path: url,
      model: route ? decodeURIComponent(route[1]!) : '',
      stream: route?.[2] === 'converse-stream' || route?.[2] === 'invoke-with-response-stream',
      headers: { ...req.headers },
      body,
      json,
      signed: refusal === undefined,
    };
    requests.push(captured);
    if (refusal) return awsError(res, 403, refusal.type, refusal.message);
    if (!route || req.method !== 'POST')
      return awsError(res, 404, 'UnknownOperationException', 'Unknown operation.');
    if (
      route[2] === 'invoke' &&
      /(?:^|[./])(?:amazon\.titan-embed|cohere\.embed)/.test(captured.model)
    )
      return embeddingAnswer(res, captured.model, json, {
        ...opts.defaults,
        ...(queue.shift() ?? {}),
      });
    if (invoke && (json?.anthropic_version !== 'bedrock-2023-05-31' || 'model' in (json ?? {})))
      return awsError(
        res,
        400,
        'ValidationException',
        'Malformed input request: anthropic_version must be bedrock-2023-05-31 and model is not allowed.',
      );
    if (!json || !Array.isArray(json.messages) || json.messages.length === 0)
      return awsError(
        res,
        400,
        'ValidationException',
        'The provided request is not valid: messages is required.',
      );
    const step: BedrockStep = { ...opts.defaults, ...(queue.shift() ?? {}) };
    if (step.hold) await step.hold;
    await sleep(step.delayMs ?? 0);
    if (step.reset) {
      res.destroy();
      return;
    }
    if (step.status && step.status >= 400) {
      const type =
        step.status === 429
          ? 'ThrottlingException'
          : step.status === 503
            ? 'ServiceUnavailableException'
            : step.status >= 500
              ? 'InternalServerException'
              : 'ValidationException';
      return awsError(res, step.status, type, `mock failure ${step.status}`);
    }
    const content = step.content ?? `echo: ${lastUserText(json)}`;
    const inference = (json.inferenceConfig ?? {}) as { maxTokens?: unknown };
    const limit = typeof inference.maxTokens === 'number' ? inference.maxTokens : Infinity;
    const asked = step.usage ?? { input: 12, output: Math.max(1, words(content).length) };
    const usage = step.honourMaxTokens
      ? { input: asked.input, output: Math.min(asked.output, limit) }
      : asked;
    const stopReason =
      step.stopReason ??
      (step.toolCall
        ? 'tool_use'
        : step.honourMaxTokens && asked.output > limit
          ? 'max_tokens'
          : 'end_turn');
    const usageObj = {
      inputTokens: usage.input,
      outputTokens: usage.output,
      totalTokens: usage.input + usage.output,
    };
    const requestId = `mock-${requests.length}`;
    const tool = step.toolCall
      ? {
          toolUseId: step.toolCall.id ?? 'tooluse_mock1',
          name: step.toolCall.name,
          input: step.toolCall.arguments,
        }
      : undefined;
    const text = step.toolCall ? step.content : content;

    if (invoke) return invokeAnswer(res, captured, { text: text ?? '', usage, requestId, step });
    if (!captured.stream) {
      const blocks: unknown[] = [];
      if (text) blocks.push({ text });
      if (tool) blocks.push({ toolUse: tool });
      const out = JSON.stringify({
        output: { message: { role: 'assistant', content: blocks } },
        stopReason,
        usage: usageObj,
        metrics: { latencyMs: 1 },
      });
      res.writeHead(200, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(out),
        'x-amzn-requestid': requestId,
      });
      res.end(out);
      return;
    }

    res.writeHead(200, {
      'content-type': 'application/vnd.amazon.eventstream',
      'x-amzn-requestid': requestId,
    });
    // Both response kinds write the same way; the union's overloads are not callable as one.
    const write = (b: Uint8Array): boolean => (res as ServerResponse).write(b);
    const send = async (bytes: Uint8Array): Promise<void> => {
      const split = opts.frameSplit;
      if (!split) write(bytes);
      else for (let i = 0; i < bytes.length; i += split) write(bytes.subarray(i, i + split));
      await sleep(step.chunkDelayMs ?? 0);
    };
    await send(frame('messageStart', { role: 'assistant' }));
    let index = 0;
    if (text) {
      for (const [i, w] of words(text, step.chunkChars).entries()) {
        await send(frame('contentBlockDelta', { contentBlockIndex: 0, delta: { text: w } }));
        if (i === 0 && step.exception) {
          await send(exceptionFrame(step.exception.type, step.exception.message));
          res.end();
          return;
        }
      }
      await send(frame('contentBlockStop', { contentBlockIndex: 0 }));
      index = 1;
    }
    if (tool) {
      await send(
        frame('contentBlockStart', {
          contentBlockIndex: index,
          start: { toolUse: { toolUseId: tool.toolUseId, name: tool.name } },
        }),
      );
      const input = JSON.stringify(tool.input);
      const half = Math.ceil(input.length / 2);
      for (const part of [input.slice(0, half), input.slice(half)])
        await send(
          frame('contentBlockDelta', {
            contentBlockIndex: index,
            delta: { toolUse: { input: part } },
          }),
        );
      await send(frame('contentBlockStop', { contentBlockIndex: index }));
    }
    await send(frame('messageStop', { stopReason }));
    await send(frame('metadata', { usage: usageObj, metrics: { latencyMs: 1 } }));
    res.end();
  }

  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, host, resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${host}:${port}`,
    host,
    port,
    requests,
    enqueue: (...steps) => queue.push(...steps),
    take: () => requests.splice(0),
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        if ('closeAllConnections' in server) server.closeAllConnections();
      }),
  };
}
