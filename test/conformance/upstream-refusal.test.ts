// An upstream attempt the extproc refuses (a backend no translator carries the request to, a request
// it lost track of, an unknown backend) under Envoy's semantics for an upstream ext_proc filter.
// Up to Envoy 1.35 (the release the chart pins) that filter's immediate responses and fail-closed
// errors are ignored (Filter::sendImmediateResponse returns early when the filter is upstream,
// counting send_immediate_resp_upstream_ignored) and the attempt is held until the router's
// timeout; later Envoy sends them downstream, never retried. The extproc therefore ends such a
// request through the router filter, whose immediate responses Envoy honours in any state; the
// route's backends are checked there first, so a route that cannot serve the caller at all is
// refused before routing.
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
  - name: bedrock
    cluster: sluice/backend/bedrock
    provider: aws-bedrock
routes:
  - name: mixed
    models: [{ exact: mixed-model }]
    backends: [{ name: anthropic }, { name: openai, priority: 1 }]
  - name: claude
    models: [{ prefix: 'claude-' }]
    backends: [{ name: claude-only }, { name: bedrock, priority: 1 }]
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
      'This gateway cannot send OpenAI embeddings requests to anthropic or aws-bedrock backends.',
    );
    await waitFor(() => accessLines(h).length > before);
    const line = accessLines(h).at(-1)!;
    assert.equal(line.error_code, 'unsupported_backend');
    assert.equal(line.attempts, 0);
  });
});

describe('conformance: an attempt on a backend that cannot take the request (Envoy 1.35)', () => {
  it('ends the request through the router filter; the upstream filter’s own reply is ignored', async () => {
    const before = accessLines(h).length;
    const { router, r, reply } = await routed(openaiEmbeddings('mixed-model'), '/v1/embeddings');
    const c = continued(r);
    assert.equal(c.routeCacheCleared, true);
    const id = get(c.headers, 'x-sluice-request-id');
    const { up, outcome } = await attempt(r, 'anthropic');
    // Envoy ignores the upstream filter's reply and holds the attempt...
    assert.deepEqual(outcome, { stalled: 'sluice_unsupported_backend' });
    assert.equal(up.stats.send_immediate_resp_upstream_ignored, 1);
    // ...but the router filter answers the client at once, and the attempt is reset with it.
    const local = await reply;
    assert.equal(local.status, 501);
    assert.equal(local.responseStarted, false);
    assert.equal(local.details, 'sluice_unsupported_backend');
    assert.deepEqual(router.violations, []);
    assert.equal(get(local.headers, 'x-sluice-request-id'), id);
    const e = errorOf(local);
    assert.equal(e.code, 'unsupported_backend');
    assert.equal(e.type, 'server_error');
    assert.equal(
      e.message,
      'This gateway cannot send OpenAI embeddings requests to an anthropic backend.',
    );
    up.close();
    await waitFor(() => accessLines(h).length > before);
    const line = accessLines(h).at(-1)!;
    assert.equal(line.request_id, id);
    assert.equal(line.error_code, 'unsupported_backend');
    assert.equal(line.outcome, 'rejected');
    assert.equal(line.status, 501);
  });

  it('answers an Anthropic caller with an Anthropic error object', async () => {
    // The claude route's priority-1 backend is Bedrock: an attempt there (a fallback) is refused.
    const { r, reply } = await routed(anthropicMessages('claude-sonnet-4'), '/v1/messages');
    const { up, outcome } = await attempt(r, 'bedrock', 'sluice/backend/bedrock');
    assert.ok('stalled' in outcome);
    const local = await reply;
    const b = JSON.parse(local.body.toString()) as { type: string; error: { type: string } };
    assert.equal(b.type, 'error');
    assert.equal(local.status, 501);
    assert.equal(get(local.headers, 'x-sluice-error-code'), 'unsupported_backend');
    up.close();
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

  it('without the router state, the upstream filter can only answer on its own stream', async () => {
    // Nothing to record and no router stream to end the request with: the attempt is held until
    // the router's timeout, where the route's timeout and retry policy decide.
    let stalled!: (d: string) => void;
    const stall = new Promise<string>((s) => (stalled = s));
    const f = new ExtProcFilter(h.client, upstreamFilter('sluice/backend/bedrock'), { stalled });
    void f.runRequest(chatHeaders([['x-sluice-request-id', 'made-up']]), []);
    assert.equal(await stall, 'sluice_gateway_error');
    assert.equal(f.stats.send_immediate_resp_upstream_ignored, 1);
    f.close();
  });
});

describe('conformance: an attempt refused, with a data plane that sends upstream local replies', () => {
  it('the client gets the same error whichever reply Envoy acts on', async () => {
    const { r, reply } = await routed(openaiEmbeddings('mixed-model'), '/v1/embeddings');
    const { up, outcome } = await attempt(r, 'anthropic', SHARED, { upstreamLocalReplies: true });
    assert.ok('result' in outcome);
    const own = outcome.result as LocalReply;
    assert.equal(own.kind, 'local-reply');
    const viaRouter = await reply;
    for (const x of [own, viaRouter]) {
      assert.equal(x.status, 501);
      assert.equal(x.details, 'sluice_unsupported_backend');
      assert.equal(errorOf(x).code, 'unsupported_backend');
    }
    assert.equal(own.body.toString(), viaRouter.body.toString());
    up.close();
  });

  it('without the router state: 500 gateway_error from the upstream filter', async () => {
    const f = new ExtProcFilter(h.client, {
      ...upstreamFilter('sluice/backend/bedrock'),
      upstreamLocalReplies: true,
    });
    const r = await f.runRequest(chatHeaders([['x-sluice-request-id', 'made-up']]), []);
    assert.equal(r.kind, 'local-reply');
    const local = r;
    assert.equal(local.status, 500);
    assert.equal(errorOf(local).code, 'gateway_error');
  });

  it('an unknown backend on a shared cluster: 500 gateway_error, the same both ways', async () => {
    const { r, reply } = await routed(openaiChat('mixed-model'));
    const { up, outcome } = await attempt(r, '', SHARED, { upstreamLocalReplies: true });
    assert.ok('result' in outcome);
    assert.equal((outcome.result as LocalReply).status, 500);
    const viaRouter = await reply;
    assert.equal(viaRouter.status, 500);
    assert.equal(errorOf(viaRouter).code, 'gateway_error');
    up.close();
  });
});
