/**
 * Mock model providers speaking the real wire formats, for the e2e tier and the quickstart:
 * - OpenAI: GET /v1/models, POST /v1/chat/completions (JSON and SSE; a usage chunk with empty
 *   `choices` only when `stream_options.include_usage` is true), /v1/completions, /v1/embeddings,
 *   /v1/responses (JSON and SSE events; each response gets its own id and, unless `store` is
 *   false, is kept: GET and DELETE /v1/responses/{id} and GET …/input_items answer from what was
 *   kept, 404 for anything else); errors as `{error:{message,type,param,code}}`.
 * - Azure OpenAI: /openai/deployments/{deployment}/{operation}?api-version=…, `api-key` header,
 *   or a Microsoft Entra ID bearer token (operator/mock-provider/entra.ts issues them).
 * - Anthropic: POST /v1/messages (JSON and SSE events), `x-api-key` and `anthropic-version`.
 * Both answer with a tool call when a step asks for one (JSON, and streamed as each API streams
 * tool calls: OpenAI `tool_calls` argument deltas, Anthropic `tool_use` blocks with
 * `input_json_delta`). test/e2e/mock-sdk.test.ts points the official SDKs straight at them.
 * Any path prefix before those is accepted (OpenAI-compatible servers mounted below one).
 *
 * Scripting: `enqueue(...)` steps are used one per request, in order; then `defaults`. A step can
 * hold the answer until a gate opens, delay the headers, fail with a status (429 carries retry-after), reset the connection, stream
 * slowly or in deltas of a fixed number of characters, or set usage and content. Every request is
 * captured (method, path, headers, body, and the SNI name over HTTPS).
 */
import { createServer as createHttp, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttps } from 'node:https';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';

export interface Captured {
  method: string;
  /** Path with query. */
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  json: Record<string, unknown> | undefined;
  /** Which API the mock recognised. */
  api: 'openai' | 'azure' | 'anthropic' | 'unknown';
  /** The SNI server name the client sent (HTTPS only; absent when it sent none). */
  servername?: string;
}

export interface Step {
  /** Answer only once this settles: a gate the test opens, so requests stay in flight together. */
  hold?: Promise<unknown>;
  /** Wait this long before answering (the headers, for streams). */
  delayMs?: number;
  /** Answer with this error status and a provider-shaped error body. */
  status?: number;
  retryAfter?: string;
  /** Destroy the connection instead of answering. */
  reset?: boolean;
  /** Delay between stream chunks. */
  chunkDelayMs?: number;
  /** Stream deltas of this many characters, cutting through words; default a word per delta. */
  chunkChars?: number;
  /** The assistant text; default echoes the last user message. */
  content?: string;
  usage?: { input: number; output: number };
  /**
   * Stop at the request's max_tokens (or its API's equivalent) as a real provider does: `usage.output`
   * is then what the model would generate without a limit. Off by default, so a test can have a
   * provider bill more than was asked for.
   */
  honourMaxTokens?: boolean;
  /** Answer with a call of this tool (after `content`, if set) instead of plain text. */
  toolCall?: { id?: string; name: string; arguments: Record<string, unknown> };
}

export interface MockOptions {
  host?: string;
  port?: number;
  /** Credentials the mock insists on (each checked only for its API). */
  auth?: {
    bearer?: string;
    azureKey?: string;
    anthropicKey?: string;
    /**
     * Azure OpenAI with Microsoft Entra ID: the `Authorization` header must carry a token this
     * check accepts (e.g. MockEntra's `valid`), and no `api-key` may come along.
     */
    azureBearer?: (authorization: string | undefined) => boolean;
  };
  /** Serve HTTPS with this key pair. */
  tls?: { key: string; cert: string };
  /** Model list for GET /v1/models. */
  models?: string[];
  defaults?: Step;
  name?: string;
}

export interface MockProvider {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly requests: Captured[];
  enqueue(...steps: Step[]): void;
  /** Requests that reached the mock since the last reset, and forget them. */
  take(): Captured[];
  close(): Promise<void>;
}

/** The request's own limit on generated tokens (Infinity when it sets none). */
function outputLimit(json: Record<string, unknown>): number {
  for (const f of ['max_completion_tokens', 'max_tokens', 'max_output_tokens']) {
    const v = json[f];
    if (typeof v === 'number' && Number.isInteger(v) && v > 0) return v;
  }
  return Infinity;
}

const sleep = (ms: number): Promise<void> =>
  ms > 0 ? new Promise((r) => setTimeout(r, ms)) : Promise.resolve();

export async function startMockProvider(opts: MockOptions = {}): Promise<MockProvider> {
  const requests: Captured[] = [];
  const queue: Step[] = [];
  const kept: KeptResponses = { byId: new Map() };
  const host = opts.host ?? '127.0.0.1';
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      let json: Record<string, unknown> | undefined;
      try {
        json =
          body.length > 0
            ? (JSON.parse(body.toString('utf8')) as Record<string, unknown>)
            : undefined;
      } catch {
        json = undefined;
      }
      const path = req.url ?? '/';
      const captured: Captured = {
        method: req.method ?? '',
        path,
        headers: { ...req.headers },
        body,
        json,
        api: apiOf(path),
      };
      const sni = (req.socket as TLSSocket).servername;
      if (typeof sni === 'string' && sni !== '') captured.servername = sni;
      requests.push(captured);
      const step = { ...opts.defaults, ...(queue.shift() ?? {}) };
      void answer(captured, step, res, opts, kept).catch(() => res.destroy());
    });
  };
  const server = opts.tls ? createHttps(opts.tls, handler) : createHttp(handler);
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, host, resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `${opts.tls ? 'https' : 'http'}://${host}:${port}`,
    host,
    port,
    requests,
    enqueue: (...steps) => queue.push(...steps),
    take: () => requests.splice(0),
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

function apiOf(path: string): Captured['api'] {
  const p = path.split('?')[0]!;
  if (/\/openai\/deployments\/[^/]+\//.test(p)) return 'azure';
  if (p.endsWith('/v1/messages') || p.endsWith('/messages')) return 'anthropic';
  if (/\/(chat\/completions|completions|embeddings|responses|models)(\/[^/]+)?$/.test(p))
    return 'openai';
  return 'unknown';
}

function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  extra: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...extra,
  });
  res.end(text);
}

function openaiError(status: number, message: string, code: string): unknown {
  const type =
    status === 401
      ? 'invalid_request_error'
      : status === 429
        ? 'rate_limit_exceeded'
        : status >= 500
          ? 'server_error'
          : 'invalid_request_error';
  return { error: { message, type, param: null, code } };
}

export function anthropicError(status: number, message: string): unknown {
  const type =
    status === 401
      ? 'authentication_error'
      : status === 429
        ? 'rate_limit_error'
        : status === 529
          ? 'overloaded_error'
          : status >= 500
            ? 'api_error'
            : 'invalid_request_error';
  return { type: 'error', error: { type, message } };
}

export function lastUserText(json: Record<string, unknown> | undefined): string {
  const msgs = (json?.['messages'] ?? []) as { role?: string; content?: unknown }[];
  for (let i = msgs.length - 1; i >= 0; i--) {
    const m = msgs[i]!;
    if (m.role !== 'user') continue;
    if (typeof m.content === 'string') return m.content;
    if (Array.isArray(m.content)) {
      return (m.content as { type?: string; text?: string }[])
        .filter((p) => p.type === 'text')
        .map((p) => p.text ?? '')
        .join('');
    }
  }
  const input = json?.['input'] ?? json?.['prompt'];
  return typeof input === 'string' ? input : 'hello';
}

/** Splits text into stream deltas the way providers do: a few characters per event. */
function deltas(text: string, chunkChars?: number): string[] {
  if (chunkChars !== undefined && chunkChars > 0 && text.length > 0) {
    const fixed: string[] = [];
    for (let i = 0; i < text.length; i += chunkChars) fixed.push(text.slice(i, i + chunkChars));
    return fixed;
  }
  const out = text.match(/\S+\s*|\s+/g) ?? [text];
  return out.length > 0 ? out : [''];
}

/** Responses the mock keeps, as OpenAI does for `store` (the default). */
interface KeptResponses {
  byId: Map<string, { response: Record<string, unknown>; input: Record<string, unknown>[] }>;
}

async function answer(
  c: Captured,
  step: Step,
  res: ServerResponse,
  opts: MockOptions,
  kept: KeptResponses,
): Promise<void> {
  if (step.hold) await step.hold;
  await sleep(step.delayMs ?? 0);
  if (res.destroyed) return;
  if (step.reset) {
    res.socket?.destroy();
    return;
  }
  const pathOnly = c.path.split('?')[0]!;
  const anthropic = c.api === 'anthropic';
  const auth = opts.auth ?? {};
  if (c.api === 'azure') {
    const authorization = c.headers['authorization'];
    if (
      auth.azureBearer &&
      (c.headers['api-key'] !== undefined ||
        !auth.azureBearer(typeof authorization === 'string' ? authorization : undefined))
    ) {
      return sendJson(
        res,
        401,
        openaiError(
          401,
          'Unauthorized. Access token is missing, invalid, audience is incorrect (https://cognitiveservices.azure.com), or have expired.',
          '401',
        ),
      );
    }
    if (auth.azureKey && c.headers['api-key'] !== auth.azureKey) {
      return sendJson(
        res,
        401,
        openaiError(401, 'Access denied due to invalid subscription key.', '401'),
      );
    }
    if (!/[?&]api-version=/.test(c.path)) {
      return sendJson(res, 404, openaiError(404, 'Resource not found', '404'));
    }
  } else if (anthropic) {
    // The API takes the key as x-api-key or, as the current SDK sends it, a bearer token.
    if (
      auth.anthropicKey &&
      c.headers['x-api-key'] !== auth.anthropicKey &&
      c.headers['authorization'] !== `Bearer ${auth.anthropicKey}`
    ) {
      return sendJson(res, 401, anthropicError(401, 'invalid x-api-key'));
    }
    if (!c.headers['anthropic-version']) {
      return sendJson(res, 400, anthropicError(400, 'anthropic-version header is required'));
    }
  } else if (auth.bearer && c.headers['authorization'] !== `Bearer ${auth.bearer}`) {
    return sendJson(res, 401, openaiError(401, 'Incorrect API key provided.', 'invalid_api_key'));
  }
  if (step.status && step.status >= 400) {
    const extra: Record<string, string> = {};
    if (step.status === 429) extra['retry-after'] = step.retryAfter ?? '1';
    const body = anthropic
      ? anthropicError(step.status, `mock failure ${step.status}`)
      : openaiError(
          step.status,
          `mock failure ${step.status}`,
          step.status === 429 ? 'rate_limit_exceeded' : 'server_error',
        );
    return sendJson(res, step.status, body, extra);
  }
  const json = c.json ?? {};
  const model =
    typeof json['model'] === 'string'
      ? json['model']
      : (pathOnly.match(/deployments\/([^/]+)/)?.[1] ?? 'mock-model');
  const content = step.content ?? `echo: ${lastUserText(c.json)}`;
  const asked = step.usage ?? { input: 12, output: Math.max(1, deltas(content).length) };
  const usage = step.honourMaxTokens
    ? { input: asked.input, output: Math.min(asked.output, outputLimit(json)) }
    : asked;
  const stream = json['stream'] === true;
  const created = 1_700_000_000;

  if (c.method === 'GET' && /\/models$/.test(pathOnly)) {
    return sendJson(res, 200, {
      object: 'list',
      data: (opts.models ?? ['mock-model']).map((id) => ({
        id,
        object: 'model',
        created,
        owned_by: opts.name ?? 'mock',
      })),
    });
  }
  if (anthropic) return anthropicMessages(res, model, content, usage, stream, step);
  if (step.toolCall && pathOnly.endsWith('/chat/completions'))
    return openaiToolCall(res, model, step.content, step.toolCall, usage, stream, json);
  if (pathOnly.endsWith('/embeddings')) {
    const inputs = Array.isArray(json['input']) ? (json['input'] as unknown[]) : [json['input']];
    const floats = [0.1, 0.2, 0.3, 0.4];
    // The official SDKs ask for base64 (little-endian float32) by default and decode it.
    const vector =
      json['encoding_format'] === 'base64'
        ? Buffer.from(new Float32Array(floats).buffer).toString('base64')
        : floats;
    return sendJson(res, 200, {
      object: 'list',
      data: inputs.map((_, index) => ({
        object: 'embedding',
        index,
        embedding: vector,
      })),
      model,
      usage: { prompt_tokens: usage.input, total_tokens: usage.input },
    });
  }
  const resource = /\/responses\/([^/]+)(\/input_items)?$/.exec(pathOnly);
  if (resource) return keptResponse(c, res, kept, resource[1]!, resource[2] !== undefined);
  if (pathOnly.endsWith('/responses')) {
    // As OpenAI: an id this account does not keep cannot be continued.
    const prev = json['previous_response_id'];
    if (typeof prev === 'string' && !kept.byId.has(prev))
      return sendJson(res, 404, {
        error: {
          message: `Previous response with id '${prev}' not found.`,
          type: 'invalid_request_error',
          param: 'previous_response_id',
          code: 'previous_response_not_found',
        },
      });
    // Unique across mocks, as OpenAI's ids are across accounts (two mocks = two accounts).
    const id = `resp_mock${randomBytes(16).toString('hex')}`;
    const full = responseObject(id, model, content, usage);
    if (json['store'] !== false) kept.byId.set(id, { response: full, input: inputItems(id, json) });
    return responses(res, full, content, stream, step);
  }
  const chat = pathOnly.endsWith('/chat/completions');
  if (!chat && !pathOnly.endsWith('/completions')) {
    return sendJson(res, 404, openaiError(404, `Unknown path ${pathOnly}`, 'unknown_url'));
  }
  const id = chat ? 'chatcmpl-mock' : 'cmpl-mock';
  const object = chat ? 'chat.completion' : 'text_completion';
  const usageObj = {
    prompt_tokens: usage.input,
    completion_tokens: usage.output,
    total_tokens: usage.input + usage.output,
  };
  if (!stream) {
    return sendJson(res, 200, {
      id,
      object,
      created,
      model,
      choices: [
        chat
          ? {
              index: 0,
              message: { role: 'assistant', content, refusal: null },
              logprobs: null,
              finish_reason: 'stop',
            }
          : { index: 0, text: content, logprobs: null, finish_reason: 'stop' },
      ],
      usage: usageObj,
    });
  }
  const includeUsage =
    (json['stream_options'] as { include_usage?: boolean } | undefined)?.include_usage === true;
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  const chunkObject = chat ? 'chat.completion.chunk' : 'text_completion';
  const event = (choices: unknown[], extra: Record<string, unknown> = {}): string =>
    `data: ${JSON.stringify({ id, object: chunkObject, created, model, choices, ...extra, ...(includeUsage && !('usage' in extra) ? { usage: null } : {}) })}\n\n`;
  if (chat)
    res.write(
      event([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }]),
    );
  for (const d of deltas(content, step.chunkChars)) {
    await sleep(step.chunkDelayMs ?? 0);
    if (res.destroyed) return;
    res.write(
      event([
        chat
          ? { index: 0, delta: { content: d }, finish_reason: null }
          : { index: 0, text: d, finish_reason: null },
      ]),
    );
  }
  res.write(
    event([
      chat
        ? { index: 0, delta: {}, finish_reason: 'stop' }
        : { index: 0, text: '', finish_reason: 'stop' },
    ]),
  );
  if (includeUsage) res.write(event([], { usage: usageObj }));
  res.end('data: [DONE]\n\n');
}

/** GET / DELETE of a kept response, and its input items (limit, order, after), as OpenAI answers. */
function keptResponse(
  c: Captured,
  res: ServerResponse,
  kept: KeptResponses,
  rawId: string,
  items: boolean,
): void {
  const id = decodeURIComponent(rawId);
  const k = kept.byId.get(id);
  const allowed = items ? ['GET'] : ['GET', 'DELETE'];
  if (!allowed.includes(c.method))
    return sendJson(
      res,
      405,
      openaiError(405, `Method ${c.method} not allowed.`, 'method_not_allowed'),
    );
  if (!k)
    return sendJson(res, 404, openaiError(404, `Response with id '${id}' not found.`, 'not_found'));
  if (c.method === 'DELETE') {
    kept.byId.delete(id);
    return sendJson(res, 200, { id, object: 'response', deleted: true });
  }
  if (!items) return sendJson(res, 200, k.response);
  const q = new URLSearchParams(c.path.split('?')[1] ?? '');
  let data = q.get('order') === 'asc' ? [...k.input] : [...k.input].reverse();
  const after = q.get('after');
  if (after !== null) data = data.slice(data.findIndex((x) => x['id'] === after) + 1);
  const limit = Number(q.get('limit') ?? '20');
  const page = data.slice(0, limit);
  sendJson(res, 200, {
    object: 'list',
    data: page,
    first_id: page[0]?.['id'] ?? null,
    last_id: page.at(-1)?.['id'] ?? null,
    has_more: data.length > page.length,
  });
}

/** The request's `input` as the items OpenAI lists for it (a string is one user message). */
function inputItems(id: string, json: Record<string, unknown>): Record<string, unknown>[] {
  const input = json['input'];
  const list = typeof input === 'string' ? [{ role: 'user', content: input }] : input;
  if (!Array.isArray(list)) return [];
  return list.map((raw: unknown, i) => {
    const item = { ...(raw as Record<string, unknown>) };
    const text = item['content'];
    return {
      id: `msg_${id.slice(5)}_${i}`,
      type: 'message',
      status: 'completed',
      ...item,
      ...(typeof text === 'string' && { content: [{ type: 'input_text', text }] }),
    };
  });
}

function responseObject(
  id: string,
  model: string,
  content: string,
  usage: { input: number; output: number },
): Record<string, unknown> {
  const message = {
    type: 'message',
    id: 'msg_mock',
    status: 'completed',
    role: 'assistant',
    content: [{ type: 'output_text', text: content, annotations: [] }],
  };
  return {
    id,
    object: 'response',
    created_at: 1_700_000_000,
    status: 'completed',
    model,
    output: [message],
    usage: {
      input_tokens: usage.input,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: usage.output,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: usage.input + usage.output,
    },
  };
}

async function responses(
  res: ServerResponse,
  full: Record<string, unknown>,
  content: string,
  stream: boolean,
  step: Step,
): Promise<void> {
  if (!stream) return sendJson(res, 200, full);
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  let seq = 0;
  const ev = (type: string, data: Record<string, unknown>): string =>
    `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: seq++, ...data })}\n\n`;
  res.write(
    ev('response.created', {
      response: { ...full, status: 'in_progress', output: [], usage: null },
    }),
  );
  for (const d of deltas(content, step.chunkChars)) {
    await sleep(step.chunkDelayMs ?? 0);
    if (res.destroyed) return;
    res.write(
      ev('response.output_text.delta', {
        item_id: 'msg_mock',
        output_index: 0,
        content_index: 0,
        delta: d,
      }),
    );
  }
  res.end(ev('response.completed', { response: full }));
}

export async function anthropicMessages(
  res: ServerResponse,
  model: string,
  content: string,
  usage: { input: number; output: number },
  stream: boolean,
  step: Step,
): Promise<void> {
  const base = { id: 'msg_mock', type: 'message', role: 'assistant', model };
  const tool = step.toolCall;
  const toolBlock = tool
    ? { type: 'tool_use', id: tool.id ?? 'toolu_mock', name: tool.name, input: tool.arguments }
    : undefined;
  if (!stream) {
    return sendJson(res, 200, {
      ...base,
      content: toolBlock
        ? [...(step.content ? [{ type: 'text', text: content }] : []), toolBlock]
        : [{ type: 'text', text: content }],
      stop_reason: toolBlock ? 'tool_use' : 'end_turn',
      stop_sequence: null,
      usage: { input_tokens: usage.input, output_tokens: usage.output },
    });
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  const ev = (type: string, data: Record<string, unknown>): string =>
    `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
  res.write(
    ev('message_start', {
      message: {
        ...base,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: { input_tokens: usage.input, output_tokens: 1 },
      },
    }),
  );
  res.write(ev('ping', {}));
  let index = 0;
  if (!toolBlock || step.content) {
    res.write(ev('content_block_start', { index, content_block: { type: 'text', text: '' } }));
    for (const d of deltas(content, step.chunkChars)) {
      await sleep(step.chunkDelayMs ?? 0);
      if (res.destroyed) return;
      res.write(ev('content_block_delta', { index, delta: { type: 'text_delta', text: d } }));
    }
    res.write(ev('content_block_stop', { index }));
    index++;
  }
  if (toolBlock) {
    res.write(ev('content_block_start', { index, content_block: { ...toolBlock, input: {} } }));
    for (const d of deltas(JSON.stringify(toolBlock.input), 7)) {
      res.write(
        ev('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json: d } }),
      );
    }
    res.write(ev('content_block_stop', { index }));
  }
  res.write(
    ev('message_delta', {
      delta: { stop_reason: toolBlock ? 'tool_use' : 'end_turn', stop_sequence: null },
      usage: { output_tokens: usage.output },
    }),
  );
  res.end(ev('message_stop', {}));
}

/** An OpenAI chat completion that calls a tool, whole or streamed in argument deltas. */
function openaiToolCall(
  res: ServerResponse,
  model: string,
  content: string | undefined,
  tool: NonNullable<Step['toolCall']>,
  usage: { input: number; output: number },
  stream: boolean,
  json: Record<string, unknown>,
): void {
  const id = 'chatcmpl-mock';
  const created = 1_700_000_000;
  const call = {
    id: tool.id ?? 'call_mock',
    type: 'function',
    function: { name: tool.name, arguments: JSON.stringify(tool.arguments) },
  };
  const usageObj = {
    prompt_tokens: usage.input,
    completion_tokens: usage.output,
    total_tokens: usage.input + usage.output,
  };
  if (!stream) {
    return sendJson(res, 200, {
      id,
      object: 'chat.completion',
      created,
      model,
      choices: [
        {
          index: 0,
          message: {
            role: 'assistant',
            content: content ?? null,
            tool_calls: [call],
            refusal: null,
          },
          logprobs: null,
          finish_reason: 'tool_calls',
        },
      ],
      usage: usageObj,
    });
  }
  const includeUsage =
    (json['stream_options'] as { include_usage?: boolean } | undefined)?.include_usage === true;
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  const event = (choices: unknown[], extra: Record<string, unknown> = {}): string =>
    `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices, ...extra })}\n\n`;
  res.write(
    event([
      { index: 0, delta: { role: 'assistant', content: content ?? null }, finish_reason: null },
    ]),
  );
  res.write(
    event([
      {
        index: 0,
        delta: {
          tool_calls: [
            {
              index: 0,
              id: call.id,
              type: 'function',
              function: { name: tool.name, arguments: '' },
            },
          ],
        },
        finish_reason: null,
      },
    ]),
  );
  for (const d of deltas(call.function.arguments, 7)) {
    res.write(
      event([
        {
          index: 0,
          delta: { tool_calls: [{ index: 0, function: { arguments: d } }] },
          finish_reason: null,
        },
      ]),
    );
  }
  res.write(event([{ index: 0, delta: {}, finish_reason: 'tool_calls' }]));
  if (includeUsage) res.write(event([], { usage: usageObj }));
  res.end('data: [DONE]\n\n');
}
