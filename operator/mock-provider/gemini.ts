/**
 * A mock Gemini API speaking the real wire format, for the e2e tier: POST
 * /{version}/models/{model}:generateContent (JSON) and …:streamGenerateContent?alt=sse (one whole
 * GenerateContentResponse per SSE event; the last carries finishReason and usageMetadata). The key
 * must come as `x-goog-api-key` (or `?key=`); a wrong or missing one is refused as Google does (400
 * INVALID_ARGUMENT / 403 PERMISSION_DENIED in `{"error":{code,message,status}}`).
 * test/e2e/mock-gemini.test.ts points the official `@google/genai` SDK at it.
 *
 * Also served: embeddings (the Gemini API's batchEmbedContents and embedContent; Vertex AI's
 * `predict` on text embedding models and `embedContent`), and Claude on Vertex AI (`rawPredict` /
 * `streamRawPredict` under publishers/anthropic: a Messages body without `model`, with
 * `anthropic_version`; Anthropic's answer and events). Every Vertex path takes only a token this
 * mock issued. test/e2e/mock-vertex.test.ts points @google/genai (Vertex mode) and
 * @anthropic-ai/vertex-sdk at them.
 *
 * Scripting as the other mocks (operator/mock-provider/provider.ts), plus `block`: the safety
 * system blocks the prompt (`promptFeedback.blockReason`) or the answer (`finishReason: SAFETY`).
 */
import { createPublicKey } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { jwtVerify } from 'jose';
import {
  anthropicError,
  anthropicMessages,
  lastUserText as lastMessagesText,
  type Step,
} from './provider.js';

export interface GeminiStep extends Step {
  block?: 'prompt' | 'answer';
}

export interface GeminiCaptured {
  method: string;
  path: string;
  model: string;
  stream: boolean;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  json: Record<string, unknown> | undefined;
}

export interface MockGeminiOptions {
  host?: string;
  port?: number;
  apiKey: string;
  defaults?: GeminiStep;
  /**
   * Serve Vertex AI too: /v1 (or /v1beta1)/projects/{project}/locations/{location}/publishers/google/models/…
   * answers only with a bearer token this mock issued and that has not expired; POST /token
   * issues them for a jwt-bearer assertion signed (RS256) by the service account's key, issued by
   * its email for the audience `{url}/token`.
   */
  vertex?: {
    project: string;
    location: string;
    clientEmail: string;
    /** The service account's public key (PEM). */
    publicKeyPem: string;
    /** Lifetime of the tokens it issues (default 3600 s). */
    tokenSeconds?: number;
  };
  now?: () => number;
}

export interface MockGemini {
  readonly url: string;
  readonly port: number;
  readonly requests: GeminiCaptured[];
  /** Tokens issued by POST /token so far. */
  readonly tokensIssued: number;
  enqueue(...steps: GeminiStep[]): void;
  take(): GeminiCaptured[];
  close(): Promise<void>;
}

function googleError(res: ServerResponse, code: number, status: string, message: string): void {
  const text = JSON.stringify({ error: { code, message, status } });
  res.writeHead(code, {
    'content-type': 'application/json; charset=UTF-8',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

function lastUserText(json: Record<string, unknown> | undefined): string {
  const contents = Array.isArray(json?.contents)
    ? (json.contents as { role?: string; parts?: { text?: unknown }[] }[])
    : [];
  for (let i = contents.length - 1; i >= 0; i--) {
    const c = contents[i]!;
    if (c.role !== undefined && c.role !== 'user') continue;
    const text = (c.parts ?? []).map((p) => (typeof p.text === 'string' ? p.text : '')).join('');
    if (text) return text;
  }
  return 'hello';
}

function pieces(text: string, chunkChars?: number): string[] {
  if (chunkChars !== undefined && chunkChars > 0) {
    const out: string[] = [];
    for (let i = 0; i < text.length; i += chunkChars) out.push(text.slice(i, i + chunkChars));
    return out.length > 0 ? out : [''];
  }
  return text.match(/\S+\s*|\s+/g) ?? [text];
}

const sleep = (ms: number): Promise<void> =>
  ms > 0 ? new Promise((r) => setTimeout(r, ms)) : Promise.resolve();

/** A deterministic vector for a text: the same text always embeds the same. */
export function mockVector(text: string, dims = 8): number[] {
  const out: number[] = [];
  for (let i = 0; i < dims; i++) {
    const c = text.length > 0 ? text.charCodeAt(i % text.length) : 0;
    out.push(((c % 13) - 6) / 8);
  }
  return out;
}

function sendJsonStatus(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=UTF-8',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

/**
 * Claude on Vertex AI (rawPredict / streamRawPredict): a Messages body without `model`, with
 * `anthropic_version: vertex-2023-10-16`, `stream` matching the method; the Messages answer.
 * Quota refusals come from Google's front door, every other failure from the model (Anthropic's
 * error shape), as Vertex answers.
 */
async function claudeAnswer(
  res: ServerResponse,
  model: string,
  method: string,
  json: Record<string, unknown> | undefined,
  step: GeminiStep,
): Promise<void> {
  const invalid = (message: string): void => sendJsonStatus(res, 400, anthropicError(400, message));
  if (!json) return invalid('The request body is not valid JSON.');
  // vertex-2023-10-16, or (as @anthropic-ai/vertex-sdk 1.x sends) the caller's dated API version.
  const version = json.anthropic_version;
  if (
    typeof version !== 'string' ||
    (version !== 'vertex-2023-10-16' && !/^\d{4}-\d{2}-\d{2}$/.test(version))
  )
    return invalid('anthropic_version: Input should be vertex-2023-10-16');
  if ('model' in json) return invalid('model: Extra inputs are not permitted');
  if ((json.stream === true) !== (method === 'streamRawPredict'))
    return invalid('stream must be true on streamRawPredict and absent or false on rawPredict');
  if (typeof json.max_tokens !== 'number') return invalid('max_tokens: Field required');
  if (!Array.isArray(json.messages) || json.messages.length === 0)
    return invalid('messages: at least one message is required');
  if (step.status && step.status >= 400) {
    if (step.status === 429)
      return googleError(
        res,
        429,
        'RESOURCE_EXHAUSTED',
        'Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model.',
      );
    return sendJsonStatus(
      res,
      step.status,
      anthropicError(step.status, `mock failure ${step.status}`),
    );
  }
  const content = step.content ?? `echo: ${lastMessagesText(json)}`;
  const asked = step.usage ?? { input: 12, output: Math.max(1, pieces(content).length) };
  const limit = json.max_tokens;
  const usage = step.honourMaxTokens
    ? { input: asked.input, output: Math.min(asked.output, limit) }
    : asked;
  return anthropicMessages(res, model, content, usage, json.stream === true, step);
}

/**
 * Embeddings: Vertex AI `predict` (instances[].content) and `embedContent` (one content), the
 * Gemini API `batchEmbedContents` (requests[], each naming its model) and `embedContent`. Token
 * counts where Google gives them (Vertex), none where it does not (the Gemini API).
 */
function embedAnswer(
  res: ServerResponse,
  method: string,
  json: Record<string, unknown> | undefined,
  step: GeminiStep,
  model: string,
  vertex: boolean,
): void {
  if (step.status && step.status >= 400)
    return googleError(
      res,
      step.status,
      step.status === 429
        ? 'RESOURCE_EXHAUSTED'
        : step.status >= 500
          ? 'INTERNAL'
          : 'INVALID_ARGUMENT',
      `mock failure ${step.status}`,
    );
  const bad = (message: string): void => googleError(res, 400, 'INVALID_ARGUMENT', message);
  if (!json) return bad('Invalid JSON payload received.');
  const tokens = (t: string): number => step.usage?.input ?? Math.max(1, pieces(t).length);
  const textOf = (c: unknown): string | undefined => {
    const parts = (c as { parts?: { text?: unknown }[] } | undefined)?.parts;
    const text = Array.isArray(parts) ? parts.map((p) => p.text).join('') : undefined;
    return typeof text === 'string' && text.length > 0 ? text : undefined;
  };
  const dimsOf = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);
  switch (method) {
    case 'predict': {
      const instances = json.instances as { content?: unknown }[] | undefined;
      if (!Array.isArray(instances) || instances.length === 0)
        return bad('instances: at least one instance is required');
      if (model === 'gemini-embedding-001' && instances.length > 1)
        return bad('Only one instance is allowed per request for gemini-embedding-001.');
      const dims = dimsOf(
        (json.parameters as { outputDimensionality?: unknown })?.outputDimensionality,
      );
      const texts: string[] = [];
      for (const i of instances) {
        if (typeof i.content !== 'string' || i.content.length === 0)
          return bad('instances[].content must be a non-empty string');
        texts.push(i.content);
      }
      return sendJsonStatus(res, 200, {
        predictions: texts.map((t) => ({
          embeddings: {
            values: mockVector(t, dims),
            statistics: { token_count: tokens(t), truncated: false },
          },
        })),
        metadata: { billableCharacterCount: texts.join('').length },
      });
    }
    case 'embedContent': {
      const text = textOf(json.content);
      if (text === undefined) return bad('content: text is required');
      const config = (json.embedContentConfig ?? json) as { outputDimensionality?: unknown };
      const values = mockVector(text, dimsOf(config.outputDimensionality));
      // Vertex counts tokens; the Gemini API does not.
      return sendJsonStatus(
        res,
        200,
        vertex
          ? {
              embedding: { values },
              usageMetadata: { promptTokenCount: tokens(text), totalTokenCount: tokens(text) },
              truncated: false,
            }
          : { embedding: { values } },
      );
    }
    default: {
      const reqs = json.requests as {
        model?: unknown;
        content?: unknown;
        outputDimensionality?: unknown;
      }[];
      if (!Array.isArray(reqs) || reqs.length === 0)
        return bad('requests: at least one request is required');
      const out: { values: number[] }[] = [];
      for (const r of reqs) {
        if (r.model !== `models/${model}`) return bad(`requests[].model must be models/${model}`);
        const text = textOf(r.content);
        if (text === undefined) return bad('requests[].content: text is required');
        out.push({ values: mockVector(text, dimsOf(r.outputDimensionality)) });
      }
      return sendJsonStatus(res, 200, { embeddings: out });
    }
  }
}

export async function startMockGemini(opts: MockGeminiOptions): Promise<MockGemini> {
  const requests: GeminiCaptured[] = [];
  const queue: GeminiStep[] = [];
  const host = opts.host ?? '127.0.0.1';
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void handle(req, Buffer.concat(chunks), res).catch(() => res.destroy());
    });
  });

  const now = opts.now ?? Date.now;
  /** Issued token → expiry (ms). */
  const tokens = new Map<string, number>();
  let issued = 0;

  async function token(body: Buffer, res: ServerResponse): Promise<void> {
    const v = opts.vertex;
    const form = new URLSearchParams(body.toString('utf8'));
    const bad = (description: string): void => {
      const text = JSON.stringify({ error: 'invalid_grant', error_description: description });
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(text);
    };
    if (!v) return bad('no service accounts here');
    if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:jwt-bearer')
      return bad('unsupported grant type');
    try {
      const { payload } = await jwtVerify(
        form.get('assertion') ?? '',
        createPublicKey(v.publicKeyPem),
        {
          issuer: v.clientEmail,
          audience: `${base}/token`,
          algorithms: ['RS256'],
          currentDate: new Date(now()),
        },
      );
      if (payload.scope !== 'https://www.googleapis.com/auth/cloud-platform')
        return bad('invalid scope');
    } catch {
      return bad('Invalid JWT Signature.');
    }
    const seconds = v.tokenSeconds ?? 3600;
    const t = `ya29.mock-${++issued}`;
    tokens.set(t, now() + seconds * 1000);
    const text = JSON.stringify({ access_token: t, expires_in: seconds, token_type: 'Bearer' });
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
    });
    res.end(text);
  }

  function vertexAuthorized(req: IncomingMessage): boolean {
    const m = /^Bearer (\S+)$/.exec(String(req.headers.authorization ?? ''));
    const expiry = m ? tokens.get(m[1]!) : undefined;
    return expiry !== undefined && expiry > now();
  }

  /** A Vertex AI call's project, location and token; false once refused. */
  function vertexAllowed(
    project: string,
    location: string,
    req: IncomingMessage,
    res: ServerResponse,
  ): boolean {
    const v = opts.vertex;
    if (!v || project !== v.project || location !== v.location) {
      googleError(res, 404, 'NOT_FOUND', 'Publisher model not found in this project and location.');
      return false;
    }
    if (!vertexAuthorized(req)) {
      googleError(
        res,
        401,
        'UNAUTHENTICATED',
        'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.',
      );
      return false;
    }
    return true;
  }

  /** A Gemini API call's key; false once refused. */
  function geminiKeyAllowed(req: IncomingMessage, url: URL, res: ServerResponse): boolean {
    const key = req.headers['x-goog-api-key'] ?? url.searchParams.get('key') ?? undefined;
    if (key === undefined) {
      googleError(res, 403, 'PERMISSION_DENIED', "Method doesn't allow unregistered callers.");
      return false;
    }
    if (key !== opts.apiKey) {
      googleError(res, 400, 'INVALID_ARGUMENT', 'API key not valid. Please pass a valid API key.');
      return false;
    }
    return true;
  }

  async function handle(req: IncomingMessage, body: Buffer, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://mock');
    if (url.pathname === '/token' && req.method === 'POST') return token(body, res);
    const vertexRoute =
      /^\/v1(?:beta1)?\/projects\/([^/]+)\/locations\/([^/]+)\/publishers\/google\/models\/([^/:]+):(generateContent|streamGenerateContent)$/.exec(
        url.pathname,
      );
    const geminiRoute =
      /\/v1(?:beta|alpha)?\d*\/models\/([^/:]+):(generateContent|streamGenerateContent)$/.exec(
        url.pathname,
      );
    const route: [string, string, string] | undefined = vertexRoute
      ? [vertexRoute[0], vertexRoute[3]!, vertexRoute[4]!]
      : geminiRoute
        ? [geminiRoute[0], geminiRoute[1]!, geminiRoute[2]!]
        : undefined;
    let json: Record<string, unknown> | undefined;
    try {
      const v: unknown = JSON.parse(body.toString('utf8'));
      if (typeof v === 'object' && v !== null && !Array.isArray(v))
        json = v as Record<string, unknown>;
    } catch {
      json = undefined;
    }
    const claude =
      /^\/v1(?:beta1)?\/projects\/([^/]+)\/locations\/([^/]+)\/publishers\/anthropic\/models\/([^/:]+):(rawPredict|streamRawPredict)$/.exec(
        url.pathname,
      );
    const vertexEmbed =
      /^\/v1(?:beta1)?\/projects\/([^/]+)\/locations\/([^/]+)\/publishers\/google\/models\/([^/:]+):(predict|embedContent)$/.exec(
        url.pathname,
      );
    const geminiEmbed =
      /\/v1(?:beta|alpha)?\d*\/models\/([^/:]+):(batchEmbedContents|embedContent)$/.exec(
        url.pathname,
      );
    if (claude || vertexEmbed || geminiEmbed) {
      const [project, location, model, method] = claude
        ? [claude[1]!, claude[2]!, claude[3]!, claude[4]!]
        : vertexEmbed
          ? [vertexEmbed[1]!, vertexEmbed[2]!, vertexEmbed[3]!, vertexEmbed[4]!]
          : [undefined, undefined, geminiEmbed![1]!, geminiEmbed![2]!];
      requests.push({
        method: req.method ?? '',
        path: req.url ?? '/',
        model: decodeURIComponent(model),
        stream: method === 'streamRawPredict',
        headers: { ...req.headers },
        body,
        json,
      });
      if (project !== undefined) {
        if (!vertexAllowed(project, location, req, res)) return;
      } else if (!geminiKeyAllowed(req, url, res)) return;
      if (req.method !== 'POST')
        return googleError(res, 404, 'NOT_FOUND', 'The requested resource was not found.');
      const step: GeminiStep = { ...opts.defaults, ...(queue.shift() ?? {}) };
      if (step.hold) await step.hold;
      await sleep(step.delayMs ?? 0);
      if (step.reset) {
        res.socket?.destroy();
        return;
      }
      if (claude) return claudeAnswer(res, decodeURIComponent(model), method, json, step);
      return embedAnswer(res, method, json, step, decodeURIComponent(model), vertexEmbed !== null);
    }
    const stream = route?.[2] === 'streamGenerateContent';
    requests.push({
      method: req.method ?? '',
      path: req.url ?? '/',
      model: route ? decodeURIComponent(route[1]) : '',
      stream,
      headers: { ...req.headers },
      body,
      json,
    });
    if (vertexRoute) {
      const v = opts.vertex;
      if (!v || vertexRoute[1] !== v.project || vertexRoute[2] !== v.location)
        return googleError(
          res,
          404,
          'NOT_FOUND',
          'Publisher model not found in this project and location.',
        );
      if (!vertexAuthorized(req))
        return googleError(
          res,
          401,
          'UNAUTHENTICATED',
          'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.',
        );
    }
    const key = vertexRoute
      ? opts.apiKey
      : (req.headers['x-goog-api-key'] ?? url.searchParams.get('key') ?? undefined);
    if (key === undefined)
      return googleError(
        res,
        403,
        'PERMISSION_DENIED',
        "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
      );
    if (key !== opts.apiKey)
      return googleError(
        res,
        400,
        'INVALID_ARGUMENT',
        'API key not valid. Please pass a valid API key.',
      );
    if (!route || req.method !== 'POST')
      return googleError(res, 404, 'NOT_FOUND', 'The requested resource was not found.');
    if (!json || !Array.isArray(json.contents) || json.contents.length === 0)
      return googleError(res, 400, 'INVALID_ARGUMENT', '* contents: contents is not specified');
    if (stream && url.searchParams.get('alt') !== 'sse')
      return googleError(res, 400, 'INVALID_ARGUMENT', 'This mock streams with alt=sse only.');
    const step: GeminiStep = { ...opts.defaults, ...(queue.shift() ?? {}) };
    if (step.hold) await step.hold;
    await sleep(step.delayMs ?? 0);
    if (step.reset) {
      res.socket?.destroy();
      return;
    }
    if (step.status && step.status >= 400) {
      const status =
        step.status === 429
          ? 'RESOURCE_EXHAUSTED'
          : step.status === 503
            ? 'UNAVAILABLE'
            : step.status >= 500
              ? 'INTERNAL'
              : 'INVALID_ARGUMENT';
      return googleError(res, step.status, status, `mock failure ${step.status}`);
    }
    const content = step.content ?? `echo: ${lastUserText(json)}`;
    const generation = (json.generationConfig ?? {}) as { maxOutputTokens?: unknown };
    const limit =
      typeof generation.maxOutputTokens === 'number' ? generation.maxOutputTokens : Infinity;
    const asked = step.usage ?? { input: 12, output: Math.max(1, pieces(content).length) };
    const usage = step.honourMaxTokens
      ? { input: asked.input, output: Math.min(asked.output, limit) }
      : asked;
    const usageMetadata = {
      promptTokenCount: usage.input,
      candidatesTokenCount: usage.output,
      totalTokenCount: usage.input + usage.output,
    };
    const responseId = `mockresp${requests.length}`;
    const modelVersion = route[1];
    const finish = step.honourMaxTokens && asked.output > limit ? 'MAX_TOKENS' : 'STOP';
    const parts: Record<string, unknown>[] = [];
    const text = step.toolCall ? step.content : content;
    if (step.toolCall)
      parts.push({ functionCall: { name: step.toolCall.name, args: step.toolCall.arguments } });

    if (step.block === 'prompt') {
      const blocked = {
        promptFeedback: { blockReason: 'SAFETY', safetyRatings: [] },
        usageMetadata: { promptTokenCount: usage.input, totalTokenCount: usage.input },
        modelVersion,
        responseId,
      };
      if (!stream) return sendJson(res, blocked);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(`data: ${JSON.stringify(blocked)}\r\n\r\n`);
      return;
    }
    const whole = (
      p: unknown[],
      finishReason: string | undefined,
      withUsage: boolean,
    ): unknown => ({
      candidates: [
        {
          content: { parts: p, role: 'model' },
          ...(finishReason ? { finishReason } : {}),
          index: 0,
        },
      ],
      ...(withUsage ? { usageMetadata } : {}),
      modelVersion,
      responseId,
    });
    if (!stream) {
      if (step.block === 'answer') return sendJson(res, whole([], 'SAFETY', true));
      return sendJson(res, whole([...(text ? [{ text }] : []), ...parts], finish, true));
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const events: unknown[] = [];
    if (step.block === 'answer') events.push(whole([], 'SAFETY', true));
    else {
      const textPieces = text ? pieces(text, step.chunkChars) : [];
      textPieces.forEach((t, i) => {
        const last = i === textPieces.length - 1 && parts.length === 0;
        events.push(whole([{ text: t }], last ? finish : undefined, last));
      });
      if (parts.length > 0) events.push(whole(parts, finish, true));
    }
    for (const e of events) {
      res.write(`data: ${JSON.stringify(e)}\r\n\r\n`);
      await sleep(step.chunkDelayMs ?? 0);
    }
    res.end();
  }

  function sendJson(res: ServerResponse, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(200, {
      'content-type': 'application/json; charset=UTF-8',
      'content-length': Buffer.byteLength(text),
    });
    res.end(text);
  }

  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, host, resolve));
  const port = (server.address() as AddressInfo).port;
  const base = `http://${host}:${port}`;
  return {
    url: base,
    port,
    requests,
    get tokensIssued() {
      return issued;
    },
    enqueue: (...steps) => queue.push(...steps),
    take: () => requests.splice(0),
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}
