// An upstream attempt the extproc refuses (a backend no translator carries the request to, a request
// it lost track of, an unknown backend), under the semantics of every supported Envoy release
// (1.37+, the driver's default): the upstream ext_proc filter's immediate response goes downstream
// through UpstreamFilterManager::sendLocalReply (envoyproxy/envoy PR #41231), unretried, and —
// being a local reply of the upstream filter chain — through the router filter's response phase
// (PR #41769). 1.36 and older ignored it and held the attempt until the route's timeout; they are
// out of support, and the extproc no longer works around them. A route that cannot serve the caller
// at all is refused by the router filter before routing.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  ExtProcFilter,
  type FilterConfig,
  type LocalReply,
  type PhaseResult,
} from '../../operator/envoy-sim/ext-proc/index.js';
import {
  accessLines,
  chatHeaders,
  continued,
  get,
  ROUTER,
  startHarness,
  upstreamFilter,
  waitFor,
  type Harness,
} from './harness.js';

const SHARED = 'route/default/mixed/rule/0';

const CONFIG = `
apiVersion: sluice.dev/extproc/v1
kind: ExtprocConfig
version: refusal-1
backends:
  - name: openai
    cluster: ${SHARED}
    provider: openai
    credential: { value: sk-backend-openai-0001 }
  - name: anthropic
    cluster: ${SHARED}
    provider: anthropic
    credential: { value: sk-ant-backend-0003 }
  - name: claude-only
    cluster: sluice/backend/claude-only
    provider: anthropic
    credential: { value: sk-ant-backend-0004 }
  - name: claude-vertex
    cluster: sluice/backend/claude-vertex
    provider: gcp-vertex
    gcp: { project: sluice-conformance, region: us-east5, publisher: anthropic }
routes:
  - name: mixed
    models: [{ exact: mixed-model }]
    backends: [{ name: anthropic }, { name: openai, priority: 1 }]
  - name: claude
    models: [{ prefix: 'claude-' }]
    backends: [{ name: claude-only }, { name: claude-vertex, priority: 1 }]
`;

let h: Harness;
before(async () => {
  h = await startHarness(CONFIG);
});
after(async () => {
  await h.stop();
});

const openaiChat = (model: string) => ({ model, messages: [{ role: 'user', content: 'Hello' }] });
/** Anthropic has no embeddings API: the request no translator carries to an Anthropic backend. */
const openaiEmbeddings = (model: string) => ({ model, input: 'Hello' });
const anthropicMessages = (model: string) => ({
  model,
  max_tokens: 16,
  messages: [{ role: 'user', content: 'Hello' }],
});

/** The router filter with its unasked local replies as a promise. */
async function routed(body: object, path = '/v1/chat/completions') {
  let interrupted!: (r: LocalReply) => void;
  const reply = new Promise<LocalReply>((r) => (interrupted = r));
  const router = new ExtProcFilter(h.client, ROUTER, { localReply: interrupted });
  const r = await router.runRequest(chatHeaders([], path), [Buffer.from(JSON.stringify(body))]);
  return { router, r, reply };
}

type Attempt = { result: PhaseResult } | { stalled: string };

/**
 * One attempt through the upstream filter, fed like Envoy's router feeds it (headers, then the
 * buffered body at once): its result, or that it holds the request.
 */
async function attempt(
  r: PhaseResult,
  backend: string,
  cluster = SHARED,
  extra: Partial<FilterConfig> = {},
): Promise<{ up: ExtProcFilter; outcome: Attempt }> {
  const c = continued(r);
  let stalled!: (d: string) => void;
  const stall = new Promise<Attempt>((s) => (stalled = (d) => s({ stalled: d })));
  const up = new ExtProcFilter(
    h.client,
    { ...upstreamFilter(cluster, backend), ...extra },
    {
      stalled,
    },
  );
  const run = up
    .runRequest(c.headers, c.hasBody ? [c.body] : [], undefined, { dataWithHeaders: true })
    .then((result): Attempt => ({ result }));
  return { up, outcome: await Promise.race([run, stall]) };
}

function errorOf(reply: LocalReply): { code: string; message: string; type: string } {
  assert.equal(get(reply.headers, 'content-type'), 'application/json');
  const b = JSON.parse(reply.body.toString()) as {
    type?: string;
    error: { code: string; message: string; type: string };
  };
  return b.error;
}

describe('conformance: a route none of whose backends can take the caller’s API', () => {
  it('is refused by the router filter, in the caller’s format, before routing', async () => {
    const before = accessLines(h).length;
    const { r } = await routed(openaiEmbeddings('claude-sonnet-4'), '/v1/embeddings');
    assert.equal(r.kind, 'local-reply');
    const reply = r;
    assert.deepEqual(reply.violations, []);
    assert.equal(reply.status, 501);
    assert.equal(reply.details, 'sluice_unsupported_backend');
    assert.equal(get(reply.headers, 'x-sluice-error-code'), 'unsupported_backend');
    const e = errorOf(reply);
    assert.equal(e.code, 'unsupported_backend');
    assert.equal(
      e.message,
      'This gateway cannot send OpenAI embeddings requests to anthropic or gcp-vertex backends.',
    );
    await waitFor(() => accessLines(h).length > before);
    const line = accessLines(h).at(-1)!;
    assert.equal(line.error_code, 'unsupported_backend');
    assert.equal(line.attempts, 0);
  });
});

describe('conformance: an attempt on a backend that cannot take the request', () => {
  it('is refused by the upstream filter in the caller’s format; the router filter passes it on', async () => {
    const before = accessLines(h).length;
    const { router, r, reply } = await routed(openaiEmbeddings('mixed-model'), '/v1/embeddings');
    const c = continued(r);
    assert.equal(c.routeCacheCleared, true);
    const id = get(c.headers, 'x-sluice-request-id');
    const { up, outcome } = await attempt(r, 'anthropic', SHARED, {
      receivingNamespaces: ['sluice'],
    });
    assert.ok('result' in outcome);
    const own = outcome.result as LocalReply;
    assert.equal(own.kind, 'local-reply');
    assert.deepEqual(up.violations, []);
    assert.equal(own.status, 501);
    assert.equal(own.details, 'sluice_unsupported_backend');
    assert.equal(get(own.headers, 'x-sluice-request-id'), id);
    // Marked as the extproc's own, so Envoy's local_reply_config leaves it as it is.
    assert.equal(up.dynamicMetadata['sluice']?.fields?.['reply']?.stringValue, 'extproc');
    const e = errorOf(own);
    assert.equal(e.code, 'unsupported_backend');
    assert.equal(e.type, 'server_error');
    assert.equal(
      e.message,
      'This gateway cannot send OpenAI embeddings requests to an anthropic backend.',
    );
    // Nothing comes unasked on the router filter's stream any more.
    await new Promise((t) => setTimeout(t, 20));
    assert.equal(router.reply, undefined);
    void reply;
    // The reply reaches the router filter's response phase (a local reply of the upstream
    // filter chain): it goes on unchanged.
    const res = continued(await router.runResponse(own.modifiedHeaders, [own.body]));
    assert.equal(res.body.toString(), own.body.toString());
    assert.deepEqual(router.violations, []);
    await waitFor(() => accessLines(h).length > before);
    const line = accessLines(h).at(-1)!;
    assert.equal(line.request_id, id);
    assert.equal(line.status, 501);
    assert.equal(line.error_code, 'unsupported_backend');
    assert.equal(line.attempts, 0, 'a refused attempt never reached a provider');
  });

  it('answers an Anthropic caller with an Anthropic error object', async () => {
    // An attempt whose endpoint names no backend of the shared cluster is refused, closed.
    const { router, r } = await routed(anthropicMessages('mixed-model'), '/v1/messages');
    const { outcome } = await attempt(r, '', SHARED);
    assert.ok('result' in outcome);
    const local = outcome.result as LocalReply;
    const b = JSON.parse(local.body.toString()) as { type: string; error: { type: string } };
    assert.equal(b.type, 'error');
    assert.equal(local.status, 500);
    assert.equal(get(local.headers, 'x-sluice-error-code'), 'gateway_error');
    router.close();
  });

  it('lets an attempt on a backend that can take it go out, shaped for it', async () => {
    const { router, r } = await routed(anthropicMessages('mixed-model'), '/v1/messages');
    const { up, outcome } = await attempt(r, 'anthropic');
    assert.ok('result' in outcome);
    const sent = continued(outcome.result);
    assert.equal(get(sent.headers, 'x-api-key'), 'sk-ant-backend-0003');
    assert.equal(up.stats.send_immediate_resp_upstream_ignored, 0);
    assert.equal(router.reply, undefined);
    up.close();
    router.close();
  });

  it('without the router state: 500 gateway_error from the upstream filter', async () => {
    const f = new ExtProcFilter(h.client, upstreamFilter('sluice/backend/bedrock'));
    const r = await f.runRequest(chatHeaders([['x-sluice-request-id', 'made-up']]), []);
    assert.equal(r.kind, 'local-reply');
    assert.equal(r.status, 500);
    assert.equal(errorOf(r).code, 'gateway_error');
  });

  it('an unknown backend on a shared cluster: 500 gateway_error', async () => {
    const { router, r } = await routed(openaiChat('mixed-model'));
    const { outcome } = await attempt(r, '', SHARED);
    assert.ok('result' in outcome);
    const local = outcome.result as LocalReply;
    assert.equal(local.status, 500);
    assert.equal(errorOf(local).code, 'gateway_error');
    router.close();
  });
});

describe('conformance: an out-of-support data plane (Envoy 1.36) ignores the refusal', () => {
  it('the upstream filter’s reply is dropped and the attempt held (the route timeout ends it)', async () => {
    const { router, r } = await routed(openaiEmbeddings('mixed-model'), '/v1/embeddings');
    const { up, outcome } = await attempt(r, 'anthropic', SHARED, { envoyRelease: '1.36' });
    assert.deepEqual(outcome, { stalled: 'sluice_unsupported_backend' });
    assert.equal(up.stats.send_immediate_resp_upstream_ignored, 1);
    up.close();
    router.close();
  });
});
