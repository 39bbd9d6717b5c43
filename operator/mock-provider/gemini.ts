/**
 * A mock Gemini API speaking the real wire format, for the e2e tier: POST
 * /{version}/models/{model}:generateContent (JSON) and …:streamGenerateContent?alt=sse (one whole
 * GenerateContentResponse per SSE event; the last carries finishReason and usageMetadata). The key
 * must come as `x-goog-api-key` (or `?key=`); a wrong or missing one is refused as Google does (400
 * INVALID_ARGUMENT / 403 PERMISSION_DENIED in `{"error":{code,message,status}}`).
 * test/e2e/mock-gemini.test.ts points the official `@google/genai` SDK at it.
 *
 * Scripting as the other mocks (operator/mock-provider/provider.ts), plus `block`: the safety
 * system blocks the prompt (`promptFeedback.blockReason`) or the answer (`finishReason: SAFETY`).
 */
import { createPublicKey } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { jwtVerify } from 'jose';
import type { Step } from './provider.js';

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
   * Serve Vertex AI too: /v1/projects/{project}/locations/{location}/publishers/google/models/…
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

  async function handle(req: IncomingMessage, body: Buffer, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://mock');
    if (url.pathname === '/token' && req.method === 'POST') return token(body, res);
    const vertexRoute =
      /^\/v1\/projects\/([^/]+)\/locations\/([^/]+)\/publishers\/google\/models\/([^/:]+):(generateContent|streamGenerateContent)$/.exec(
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
