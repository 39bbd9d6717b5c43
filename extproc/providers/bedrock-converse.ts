/**
 * What both caller APIs share on the way to AWS Bedrock's Converse API: the path, content blocks
 * for images and documents, tools, the inference config with the gateway's output cap, the
 * backend's guardrail, stop reasons and usage, error bodies, and the ConverseStream decoder.
 *
 * Converse (POST /model/{modelId}/converse) answers JSON; ConverseStream (…/converse-stream)
 * answers in the AWS event-stream binary framing (`application/vnd.amazon.eventstream`): each
 * frame is a prelude (total length, headers length, prelude CRC32), headers (`:message-type`
 * `event` or `exception`, `:event-type` messageStart / contentBlockStart / contentBlockDelta /
 * contentBlockStop / messageStop / metadata, or `:exception-type`), a JSON payload and a message
 * CRC32. Frames are cut out of the byte stream here by their length and decoded (CRCs checked,
 * headers parsed) by the AWS SDK's own codec.
 */
import type { EventStreamCodec } from '@smithy/core/event-streams';
import type { ResolvedBackend } from '../config/runtime.js';
import { SluiceError } from '../errors.js';
import { isObject, num, str, unsupportedField, type Json } from './common.js';
import type { ToolChoice, ToolSpec } from './request-walk.js';
import type { ExchangeRequest, ResponseStart, UpstreamRequest } from './translator.js';

/** `modelId` goes in the path percent-encoded (ids and ARNs carry `:` and `/`), as the SDK does. */
export function conversePath(backend: ResolvedBackend, model: string, stream: boolean): string {
  const base = (backend.pathPrefix ?? '').replace(/\/+$/, '');
  return `${base}/model/${encodeURIComponent(model)}/${stream ? 'converse-stream' : 'converse'}`;
}

/** The headers of a Bedrock runtime call: a JSON body in, JSON or an event stream out. */
export function runtimeHeaders(stream: boolean): [string, string][] {
  return [
    ['content-type', 'application/json'],
    ['accept', stream ? 'application/vnd.amazon.eventstream' : 'application/json'],
  ];
}

/** A Converse (or, for a stream, ConverseStream) call with the body `body()` builds. */
export function converseRequest(
  req: ExchangeRequest,
  backend: ResolvedBackend,
  body: () => Json,
): UpstreamRequest {
  const stream = req.body.stream === true;
  return {
    path: conversePath(backend, backend.modelOverride ?? req.model, stream),
    headers: runtimeHeaders(stream),
    body: Buffer.from(JSON.stringify(body()), 'utf8'),
  };
}

const IMAGE_FORMATS: Readonly<Record<string, string>> = {
  'image/png': 'png',
  'image/jpeg': 'jpeg',
  'image/jpg': 'jpeg',
  'image/gif': 'gif',
  'image/webp': 'webp',
};

/** A base64 image as a Converse image block; Converse takes bytes (or S3), never a URL. */
export function imageBlock(mediaType: string, data: string, at: string): Json {
  const format = IMAGE_FORMATS[mediaType.toLowerCase()];
  if (!format)
    throw unsupportedField(at, 'Bedrock backends take PNG, JPEG, GIF and WebP images only.');
  return { image: { format, source: { bytes: data } } };
}

/** A base64 PDF as a Converse document block; `n` makes the name Converse requires unique. */
export function pdfBlock(data: string, n: number): Json {
  return { document: { format: 'pdf', name: `document-${n}`, source: { bytes: data } } };
}

/**
 * Converse's toolConfig for the caller's tools and tool choice; undefined when there are no tools
 * (a choice alone means nothing then). Converse's toolChoice is auto, any (a tool must be called)
 * or one named tool: it has no way to say "call none" while tools are offered.
 */
export function toolConfig(
  tools: readonly ToolSpec[],
  choice: ToolChoice | undefined,
): Json | undefined {
  if (tools.length === 0) return undefined;
  const out: Json = {
    tools: tools.map((t) => ({
      toolSpec: {
        name: t.name,
        ...(t.description !== undefined ? { description: t.description } : {}),
        inputSchema: { json: t.schema ?? { type: 'object', properties: {} } },
      },
    })),
  };
  switch (choice?.type) {
    case 'none':
      throw unsupportedField(
        'tool_choice',
        'Bedrock backends cannot be told not to call tools that are offered; send no tools instead.',
      );
    case 'any':
      out.toolChoice = { any: {} };
      break;
    case 'tool':
      out.toolChoice = { tool: { name: choice.name } };
      break;
    default:
    // auto is Converse's default: nothing to send.
  }
  return out;
}

/**
 * The output limit to send: the caller's, held to the cap the budget reserved (a value that is not
 * a whole number in [1, cap] is replaced by the cap, as output-cap.ts does for the other APIs);
 * the cap alone when the caller set none; undefined when there is neither.
 */
export function cappedMaxTokens(requested: unknown, cap: number | undefined): number | undefined {
  const valid =
    typeof requested === 'number' && Number.isInteger(requested) && requested >= 1
      ? requested
      : undefined;
  if (cap === undefined) return valid;
  return valid !== undefined && valid <= cap ? valid : cap;
}

export interface Inference {
  maxTokens?: number | undefined;
  temperature?: unknown;
  topP?: unknown;
  stopSequences?: readonly string[] | undefined;
}

/** Converse's inferenceConfig; undefined when nothing is set. */
export function inferenceConfig(i: Inference, names: { temperature: string }): Json | undefined {
  const out: Json = {};
  if (i.maxTokens !== undefined) out.maxTokens = i.maxTokens;
  if (i.temperature !== undefined && i.temperature !== null) {
    const t = i.temperature;
    if (typeof t !== 'number' || t < 0 || t > 1)
      throw unsupportedField(
        names.temperature,
        'Bedrock backends accept a temperature from 0 to 1.',
      );
    out.temperature = t;
  }
  if (i.topP !== undefined && i.topP !== null) out.topP = i.topP;
  if (i.stopSequences && i.stopSequences.length > 0) out.stopSequences = [...i.stopSequences];
  return Object.keys(out).length > 0 ? out : undefined;
}

/** The backend's guardrail, when it has one; a stream gets its processing mode too. */
export function guardrailConfig(backend: ResolvedBackend, stream: boolean): Json | undefined {
  const g = backend.aws?.guardrail;
  if (!g) return undefined;
  const out: Json = { guardrailIdentifier: g.identifier, guardrailVersion: g.version };
  if (g.trace !== undefined) out.trace = g.trace;
  if (stream && g.streamProcessingMode !== undefined)
    out.streamProcessingMode = g.streamProcessingMode;
  return out;
}

/** Fields common to both converters: the request's frame around messages and tools. */
export function converseBody(parts: {
  messages: Json[];
  system: Json[];
  inference: Json | undefined;
  tools: Json | undefined;
  guardrail: Json | undefined;
  additional?: Json | undefined;
}): Json {
  const out: Json = { messages: parts.messages };
  if (parts.system.length > 0) out.system = parts.system;
  if (parts.inference) out.inferenceConfig = parts.inference;
  if (parts.tools) out.toolConfig = parts.tools;
  if (parts.guardrail) out.guardrailConfig = parts.guardrail;
  if (parts.additional && Object.keys(parts.additional).length > 0)
    out.additionalModelRequestFields = parts.additional;
  return out;
}

/** Appends blocks to the conversation, merging a turn into the previous one of the same role. */
export function pushTurn(messages: Json[], role: 'user' | 'assistant', blocks: Json[]): void {
  if (blocks.length === 0) return;
  const last = messages.at(-1);
  // Converse alternates turns: tool results and the user text after them are one user turn.
  if (last && last.role === role) (last.content as Json[]).push(...blocks);
  else messages.push({ role, content: blocks });
}

/** Converse usage → Anthropic's counts (input excludes cache reads and writes in both). */
export function usageCounts(u: unknown): {
  input: number;
  output: number;
  cacheRead: number;
  cacheWrite: number;
} {
  const o = isObject(u) ? u : {};
  return {
    input: num(o.inputTokens) ?? 0,
    output: num(o.outputTokens) ?? 0,
    cacheRead: num(o.cacheReadInputTokens) ?? 0,
    cacheWrite: num(o.cacheWriteInputTokens) ?? 0,
  };
}

/** Converse's answer body parsed: the message's content blocks, stop reason and usage. */
export function converseAnswer(v: Json): { content: Json[]; stopReason: string; usage: unknown } {
  const output = isObject(v.output) ? v.output : {};
  const message = isObject(output.message) ? output.message : {};
  const content = Array.isArray(message.content) ? message.content.filter(isObject) : [];
  return { content, stopReason: str(v.stopReason) ?? 'end_turn', usage: v.usage };
}

/** A Converse tool input: JSON in the answer; a string of JSON in a stream's deltas. */
export function toolInputText(input: unknown): string {
  return JSON.stringify(input ?? {});
}

// ---- errors --------------------------------------------------------------------------------

/**
 * AWS's error type from the `x-amzn-errortype` header (`ValidationException:http://…`) or the
 * body's `__type` / `code`; undefined when neither names one.
 */
export function awsErrorType(
  header: string | undefined,
  body: Json | undefined,
): string | undefined {
  const raw = header ?? str(body?.__type) ?? str(body?.code);
  if (!raw) return undefined;
  const name = raw.split(':')[0]!.split('#').at(-1)!;
  return /^[A-Za-z]{1,64}$/.test(name) ? name : undefined;
}

/** The message and type of a Bedrock error body (`{"message": …}`), whatever else it holds. */
export function bedrockError(
  status: number,
  header: string | undefined,
  body: Buffer,
): { message: string; type: string | undefined } {
  let parsed: Json | undefined;
  try {
    const v: unknown = JSON.parse(body.toString('utf8'));
    if (isObject(v)) parsed = v;
  } catch {
    // Not JSON (a proxy's page): the status says it.
  }
  const message =
    str(parsed?.message) ?? str(parsed?.Message) ?? `The backend answered with status ${status}.`;
  return { message, type: awsErrorType(header, parsed) };
}

// ---- ConverseStream ------------------------------------------------------------------------

/** One decoded ConverseStream frame: an event with its payload, or an exception. */
export type ConverseEvent =
  | { kind: 'event'; type: string; payload: Json }
  | { kind: 'exception'; type: string; message: string };

const PRELUDE_BYTES = 12;
const MIN_FRAME_BYTES = 16;

const toUtf8 = (b: Uint8Array): string =>
  Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8');
const fromUtf8 = (s: string): Uint8Array => Buffer.from(s, 'utf8');

/** Shared: the codec holds no state between decode() calls. */
let codec: EventStreamCodec | undefined;
let loading: Promise<void> | undefined;

/**
 * Loads the AWS SDK's event-stream codec (@smithy/core, part of what a Bedrock backend costs in
 * V8 heap, issue 16): once a config names a Bedrock backend (loadBackendPackages, before the
 * config is applied), not with this module, which every extproc imports. Once per process; a
 * failed load is tried again next call.
 */
export function loadEventStreamCodec(): Promise<void> {
  loading ??= import('@smithy/core/event-streams').then(
    (m) => {
      codec = new m.EventStreamCodec(toUtf8, fromUtf8);
    },
    (err: unknown) => {
      loading = undefined;
      throw err;
    },
  );
  return loading;
}

/** The codec; only a config with a Bedrock backend streams from one, and it loaded it first. */
export function eventStreamCodec(): EventStreamCodec {
  if (!codec) throw new Error('event-stream codec used before loadEventStreamCodec()');
  return codec;
}

/**
 * Cuts event-stream frames out of chunks cut anywhere (mid-prelude, mid-header, mid-payload) and
 * decodes each as soon as its last byte arrives. A frame longer than `maxFrameBytes`, or one whose
 * CRCs do not match, is the backend's fault: the stream cannot go on (a bad length would leave
 * every later frame misaligned).
 */
export class ConverseStreamDecoder {
  private parts: Buffer[] = [];
  private held = 0;
  /** The current frame's total length once its prelude is in; 0 before. */
  private need = 0;

  constructor(private readonly maxFrameBytes: number) {}

  push(chunk: Buffer): ConverseEvent[] {
    const out: ConverseEvent[] = [];
    if (chunk.length > 0) {
      this.parts.push(chunk);
      this.held += chunk.length;
    }
    for (;;) {
      if (this.need === 0) {
        if (this.held < PRELUDE_BYTES) return out;
        const head = this.take(4, false);
        const total = head.readUInt32BE(0);
        if (total < MIN_FRAME_BYTES || total > this.maxFrameBytes)
          throw new SluiceError(
            'bad_upstream_response',
            'The backend sent a malformed event-stream frame.',
          );
        this.need = total;
      }
      if (this.held < this.need) return out;
      const frame = this.take(this.need, true);
      this.need = 0;
      out.push(decodeFrame(frame));
    }
  }

  /** The stream ended: bytes of a frame that never completed are the backend's fault. */
  end(): void {
    if (this.held > 0)
      throw new SluiceError('bad_upstream_response', 'The backend stream ended mid-frame.');
  }

  /** The first `n` held bytes, removed from the carry-over when `consume`. */
  private take(n: number, consume: boolean): Buffer {
    const all = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.held);
    const head = all.subarray(0, n);
    if (consume) {
      const rest = all.subarray(n);
      this.parts = rest.length > 0 ? [rest] : [];
      this.held = rest.length;
    } else {
      this.parts = [all];
    }
    return head;
  }
}

function headerString(headers: Record<string, { type: string; value: unknown }>, name: string) {
  const h = headers[name];
  return h && h.type === 'string' && typeof h.value === 'string' ? h.value : undefined;
}

function decodeFrame(frame: Buffer): ConverseEvent {
  const c = eventStreamCodec();
  let msg;
  try {
    msg = c.decode(frame);
  } catch {
    // The codec's message names checksums: not for the caller.
    throw new SluiceError(
      'bad_upstream_response',
      'The backend sent an event-stream frame that fails its checksum.',
    );
  }
  const headers = msg.headers as Record<string, { type: string; value: unknown }>;
  const messageType = headerString(headers, ':message-type');
  let payload: Json = {};
  try {
    const v: unknown = JSON.parse(toUtf8(msg.body));
    if (isObject(v)) payload = v;
  } catch {
    // An empty or non-JSON payload: read as no fields.
  }
  if (messageType === 'exception' || messageType === 'error') {
    const type =
      headerString(headers, ':exception-type') ?? headerString(headers, ':error-code') ?? 'error';
    const message =
      str(payload.message) ??
      str(payload.Message) ??
      headerString(headers, ':error-message') ??
      'The backend failed mid-stream.';
    return { kind: 'exception', type, message };
  }
  return { kind: 'event', type: headerString(headers, ':event-type') ?? '', payload };
}

/**
 * The response side every translator from a Bedrock event stream shares (Converse and InvokeModel
 * answer in the same framing): a 2xx event stream is decoded frame by frame and answered in the
 * caller's format as SSE, anything else is read whole and answered as JSON (the backend's error
 * name comes in `x-amzn-errortype`, which is not passed on). A frame that cannot be read, or a
 * stream cut before the subclass marks it `done`, ends the stream with `failure(message)`, once.
 */
export abstract class EventStreamResponse {
  protected decoder: ConverseStreamDecoder | undefined;
  protected errorType: string | undefined;
  protected done = false;

  constructor(private readonly maxFrameBytes: number) {}

  headers(status: number, headers: ReadonlyMap<string, string>): ResponseStart {
    const type = (headers.get('content-type') ?? '').toLowerCase();
    const ok = status >= 200 && status < 300;
    this.errorType = headers.get('x-amzn-errortype');
    const stream = ok && type.startsWith('application/vnd.amazon.eventstream');
    if (stream) this.decoder = new ConverseStreamDecoder(this.maxFrameBytes);
    return {
      body: stream ? 'stream' : 'whole',
      setHeaders: [['content-type', stream ? 'text/event-stream' : 'application/json']],
      removeHeaders: ['x-amzn-errortype'],
    };
  }

  stream(chunk: Buffer, end: boolean): Buffer {
    let out = '';
    try {
      for (const e of this.decoder!.push(chunk)) {
        if (this.done) break;
        out += this.onEvent(e);
      }
      if (end) this.decoder!.end();
    } catch (err) {
      // A broken frame ends the stream here, in the caller's format: nothing after it can be read.
      if (!this.done) {
        this.done = true;
        out += this.failure(err instanceof SluiceError ? err.message : 'The backend stream broke.');
      }
      return Buffer.from(out, 'utf8');
    }
    // A stream cut before its last event is no answer: the caller hears so, the usage is estimated.
    if (end && !this.done) {
      this.done = true;
      out += this.failure('The backend stream ended early.');
    }
    return Buffer.from(out, 'utf8');
  }

  /** One decoded event → the caller's events (possibly none); sets `done` after the last. */
  protected abstract onEvent(e: ConverseEvent): string;
  /** The caller's error event(s) that end a stream the backend broke (status 502). */
  protected abstract failure(message: string): string;
}

/** Whether an exception type is the backend being busy or down, rather than the request. */
export function exceptionStatus(type: string): number {
  switch (type) {
    case 'throttlingException':
    case 'ThrottlingException':
      return 429;
    case 'validationException':
    case 'ValidationException':
      return 400;
    case 'serviceUnavailableException':
    case 'ServiceUnavailableException':
      return 503;
    default:
      return 500;
  }
}
