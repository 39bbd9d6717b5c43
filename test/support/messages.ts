/** Builders for ext_proc messages as Envoy sends them (lowercase keys, values in raw_value). */
import type { Attributes, BodyMessage, HeadersMessage } from '../../extproc/pipeline/phase.js';
import type { Outcome, Verdict } from '../../extproc/wire/mutation.js';

export function headers(pairs: Record<string, string>, endOfStream = false): HeadersMessage {
  return {
    headers: {
      headers: Object.entries(pairs).map(([key, value]) => ({
        key,
        raw_value: Buffer.from(value, 'latin1'),
      })),
    },
    end_of_stream: endOfStream,
  };
}

export function body(content: string | Buffer | object, endOfStream = true): BodyMessage {
  const buf =
    typeof content === 'string'
      ? Buffer.from(content, 'utf8')
      : Buffer.isBuffer(content)
        ? content
        : Buffer.from(JSON.stringify(content), 'utf8');
  return { body: buf, end_of_stream: endOfStream };
}

export function clusterAttributes(cluster: string): Attributes {
  return {
    'envoy.filters.http.ext_proc': { fields: { 'xds.cluster_name': { stringValue: cluster } } },
  };
}

export function chatRequest(extra: Record<string, string> = {}): HeadersMessage {
  return headers({
    ':method': 'POST',
    ':path': '/v1/chat/completions',
    ':scheme': 'http',
    ':authority': 'gateway',
    'content-type': 'application/json',
    ...extra,
  });
}

/** The verdict of an outcome that must be an immediate response. */
export function verdictOf(o: Outcome): Verdict {
  if (o.kind !== 'respond')
    throw new Error(`expected an immediate response, got ${JSON.stringify(o)}`);
  return o.verdict;
}

export function jsonOf(v: Verdict): any {
  return JSON.parse(v.body);
}

export function header(list: [string, string][] | undefined, name: string): string | undefined {
  return list?.find(([k]) => k === name)?.[1];
}
