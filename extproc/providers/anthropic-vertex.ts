/**
 * What both caller APIs share on the way to Claude on Vertex AI (a `gcp-vertex` backend with
 * `gcp.publisher: anthropic`): Anthropic's Messages API behind Google's front door.
 *
 * The body is a Messages request with two differences: `model` is not in it (the path names the
 * model) and `anthropic_version: vertex-2023-10-16` is (rather than a header). POST
 * `/v1/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:rawPredict`, or
 * `:streamRawPredict` when `stream` is true (it stays in the body); an OAuth access token as for
 * every Vertex backend (providers/gcp-oauth.ts). A 2xx answer is the Messages JSON, or the
 * Messages SSE stream, unchanged.
 *
 * Errors come in two shapes: Google's front door (`{"error":{"code","message","status"}}`, e.g. a
 * missing token or an unknown model) and the model's own Anthropic error object; both reach the
 * caller in its format.
 */
import { anthropicErrorObject } from './error-body.js';
import { isObject, str, unsupportedField, type Json } from './common.js';
import { googleError } from './gemini-generate.js';
import { withOutputTokenCap } from './output-cap.js';

export const VERTEX_ANTHROPIC_VERSION = 'vertex-2023-10-16';

/**
 * A Messages body (the caller's, or one translated from OpenAI's) as Vertex takes it: without
 * `model`, with `anthropic_version`, max_tokens held to the gateway's cap. Document blocks that
 * point at a URL are refused: Vertex fetches no URLs for Claude (base64 or text sources only).
 */
export function vertexMessagesBody(body: Readonly<Json>, outputTokenCap: number | undefined): Json {
  const { model: _model, ...rest } = body;
  // Last: a caller's own anthropic_version (a Vertex SDK habit) gives way to the one Vertex takes.
  let out: Json = { ...rest, anthropic_version: VERTEX_ANTHROPIC_VERSION };
  if (outputTokenCap !== undefined)
    out = withOutputTokenCap('messages', 'anthropic', out, outputTokenCap) ?? out;
  refuseDocumentUrls(out.messages);
  return out;
}

function refuseDocumentUrls(messages: unknown): void {
  if (!Array.isArray(messages)) return;
  messages.forEach((m: unknown, i) => {
    if (!isObject(m) || !Array.isArray(m.content)) return;
    m.content.forEach((b: unknown, j) => {
      const at = `messages[${i}].content[${j}]`;
      check(b, at);
      if (isObject(b) && b.type === 'tool_result' && Array.isArray(b.content))
        b.content.forEach((n: unknown, k) => check(n, `${at}.content[${k}]`));
    });
  });
}

function check(block: unknown, at: string): void {
  if (
    isObject(block) &&
    block.type === 'document' &&
    isObject(block.source) &&
    block.source.type === 'url'
  )
    throw unsupportedField(
      `${at}.source`,
      'Claude on Vertex AI takes documents as base64 or text, not by URL.',
    );
}

/** The method for a body: `streamRawPredict` when it asks for a stream. */
export function vertexAnthropicMethod(body: Readonly<Json>): 'rawPredict' | 'streamRawPredict' {
  return body.stream === true ? 'streamRawPredict' : 'rawPredict';
}

/**
 * An error body from Claude on Vertex → an Anthropic error object: the model's own error as it
 * is, Google's front-door error (`{"error":{"code","message","status"}}`) by its message.
 */
export function vertexAnthropicError(status: number, body: Buffer): Json {
  try {
    const v: unknown = JSON.parse(body.toString('utf8'));
    if (isObject(v) && v.type === 'error' && isObject(v.error) && str(v.error.type) !== undefined)
      return {
        type: 'error',
        error: {
          type: v.error.type,
          message: str(v.error.message) ?? `The backend answered with status ${status}.`,
        },
      };
  } catch {
    // Not JSON: Google's reader below says it by status.
  }
  return anthropicErrorObject(status, googleError(status, body).message);
}
