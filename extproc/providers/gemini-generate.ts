/**
 * What both caller APIs share on the way to Google's generateContent API (the Gemini API and
 * Vertex AI take the same body): paths, parts for inline data, function declarations and the
 * function-calling config, generationConfig with the gateway's output cap, reading an answer
 * (candidates, safety blocks, usageMetadata) and error bodies.
 *
 * Gemini API: POST /v1beta/models/{model}:generateContent, …:streamGenerateContent?alt=sse (each
 * SSE event a whole GenerateContentResponse), the key in `x-goog-api-key`.
 */
import type { ResolvedBackend } from '../config/runtime.js';
import { SluiceError } from '../errors.js';
import { isObject, num, str, unsupportedField, type Json } from './common.js';
import { geminiModelPath, vertexModelPath } from './paths.js';
import type { ToolChoice, ToolSpec } from './request-walk.js';
import type { ExchangeRequest, UpstreamRequest } from './translator.js';

/**
 * Gemini API: `/v1beta/models/{model}:…` (the URL's own version segment when it names one).
 * Vertex AI: `/v1/projects/{project}/locations/{region}/publishers/google/models/{model}:…`.
 */
export function generatePath(backend: ResolvedBackend, model: string, stream: boolean): string {
  const call = stream ? 'streamGenerateContent?alt=sse' : 'generateContent';
  return backend.provider === 'gcp-vertex'
    ? vertexModelPath(backend, 'google', model, call)
    : geminiModelPath(backend, model, call);
}

/** A generateContent (or, for a stream, streamGenerateContent) call with the body `body()` builds. */
export function generateRequest(
  req: ExchangeRequest,
  backend: ResolvedBackend,
  body: () => Json,
): UpstreamRequest {
  return {
    path: generatePath(backend, backend.modelOverride ?? req.model, req.body.stream === true),
    headers: [['content-type', 'application/json']],
    body: Buffer.from(JSON.stringify(body()), 'utf8'),
  };
}

/** Output cap as for Converse: the caller's limit held to the cap; the cap when none is set. */
export { cappedMaxTokens } from './bedrock-converse.js';

export function geminiTools(defs: readonly ToolSpec[]): Json[] | undefined {
  if (defs.length === 0) return undefined;
  return [
    {
      functionDeclarations: defs.map((d) => ({
        name: d.name,
        ...(d.description !== undefined ? { description: d.description } : {}),
        // Full JSON Schema (parametersJsonSchema), not the OpenAPI subset of `parameters`.
        ...(d.schema ? { parametersJsonSchema: d.schema } : {}),
      })),
    },
  ];
}

const MODE: Readonly<Record<ToolChoice['type'], string>> = {
  auto: 'AUTO',
  none: 'NONE',
  any: 'ANY',
  tool: 'ANY',
};

/** A tool choice as Gemini's `functionCallingConfig`; a named tool is ANY with one allowed. */
export function toolConfig(choice: ToolChoice | undefined): Json | undefined {
  if (!choice) return undefined;
  const cfg: Json = { mode: MODE[choice.type] };
  if (choice.type === 'tool') cfg.allowedFunctionNames = [choice.name];
  return { functionCallingConfig: cfg };
}

export interface Generation {
  maxOutputTokens?: number | undefined;
  temperature?: unknown;
  topP?: unknown;
  topK?: unknown;
  stopSequences?: readonly string[] | undefined;
}

export function generationConfig(g: Generation): Json | undefined {
  const out: Json = {};
  if (g.maxOutputTokens !== undefined) out.maxOutputTokens = g.maxOutputTokens;
  if (g.temperature !== undefined && g.temperature !== null) {
    if (typeof g.temperature !== 'number' || g.temperature < 0 || g.temperature > 2)
      throw unsupportedField('temperature', 'Gemini backends accept a temperature from 0 to 2.');
    out.temperature = g.temperature;
  }
  if (g.topP !== undefined && g.topP !== null) out.topP = g.topP;
  if (g.topK !== undefined && g.topK !== null) out.topK = g.topK;
  if (g.stopSequences && g.stopSequences.length > 0) {
    if (g.stopSequences.length > 5)
      throw unsupportedField('stop', 'Gemini backends take at most 5 stop sequences.');
    out.stopSequences = [...g.stopSequences];
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

export function pushContent(contents: Json[], role: 'user' | 'model', parts: Json[]): void {
  if (parts.length === 0) return;
  const last = contents.at(-1);
  // Gemini alternates turns: function responses and the user text after them are one turn.
  if (last && last.role === role) (last.parts as Json[]).push(...parts);
  else contents.push({ role, parts });
}

/** A function response's `response` must be an object: JSON objects as they are, else wrapped. */
export function functionResponse(name: string, id: string | undefined, output: string): Json {
  let response: Json = { output };
  try {
    const v: unknown = JSON.parse(output);
    if (isObject(v)) response = v;
  } catch {
    // Plain text: carried as { output }.
  }
  return { functionResponse: { ...(id ? { id } : {}), name, response } };
}

// ---- answers -------------------------------------------------------------------------------

/** finishReasons that mean the safety system (or a policy) withheld the answer. */
const BLOCKED = new Set([
  'SAFETY',
  'RECITATION',
  'BLOCKLIST',
  'PROHIBITED_CONTENT',
  'SPII',
  'IMAGE_SAFETY',
]);

export interface GeminiPart {
  kind: 'text' | 'thought' | 'call';
  text?: string;
  name?: string;
  args?: Json;
  id?: string | undefined;
}

export interface GeminiChunk {
  parts: GeminiPart[];
  finishReason: string | undefined;
  usage: Json | undefined;
  /** The safety system blocked the prompt or the answer: the message says which. */
  blocked: string | undefined;
  responseId: string | undefined;
}

/** One GenerateContentResponse (a whole answer, or one streamed event) in neutral form. */
export function readChunk(v: Json): GeminiChunk {
  const feedback = isObject(v.promptFeedback) ? v.promptFeedback : {};
  const candidates = Array.isArray(v.candidates) ? v.candidates.filter(isObject) : [];
  const c = candidates[0] ?? {};
  const content = isObject(c.content) ? c.content : {};
  const parts: GeminiPart[] = [];
  for (const p of Array.isArray(content.parts) ? content.parts : []) {
    if (!isObject(p)) continue;
    if (typeof p.text === 'string')
      parts.push({ kind: p.thought === true ? 'thought' : 'text', text: p.text });
    else if (isObject(p.functionCall))
      parts.push({
        kind: 'call',
        name: str(p.functionCall.name) ?? '',
        args: isObject(p.functionCall.args) ? p.functionCall.args : {},
        id: str(p.functionCall.id),
      });
  }
  const finishReason = str(c.finishReason);
  let blocked: string | undefined;
  const promptBlock = str(feedback.blockReason);
  if (promptBlock) blocked = `The backend's safety system blocked the prompt (${promptBlock}).`;
  else if (finishReason && BLOCKED.has(finishReason) && parts.length === 0)
    blocked = `The backend's safety system withheld the answer (${finishReason}).`;
  return {
    parts,
    finishReason,
    usage: isObject(v.usageMetadata) ? v.usageMetadata : undefined,
    blocked,
    responseId: str(v.responseId),
  };
}

/** A safety block, as an error in the caller's format (400, as content filters answer). */
export function safetyError(message: string): SluiceError {
  return new SluiceError('prompt_blocked', message, { status: 400 });
}

export function isBlockedFinish(reason: string | undefined): boolean {
  return reason !== undefined && BLOCKED.has(reason);
}

export function usageCounts(u: Json | undefined): {
  prompt: number;
  output: number;
  cached: number;
} {
  const prompt = num(u?.promptTokenCount) ?? 0;
  // Thinking tokens are billed as output.
  const output = (num(u?.candidatesTokenCount) ?? 0) + (num(u?.thoughtsTokenCount) ?? 0);
  return { prompt, output, cached: num(u?.cachedContentTokenCount) ?? 0 };
}

/** Google's error body `{"error":{"code","message","status"}}` → message and status name. */
export function googleError(
  status: number,
  body: Buffer,
): { message: string; type: string | undefined } {
  let message = `The backend answered with status ${status}.`;
  let type: string | undefined;
  try {
    const v: unknown = JSON.parse(body.toString('utf8'));
    const e = Array.isArray(v) ? (v[0] as unknown) : v;
    if (isObject(e) && isObject(e.error)) {
      message = str(e.error.message) ?? message;
      type = str(e.error.status);
    }
  } catch {
    // Not JSON: the status says it.
  }
  return { message, type };
}
