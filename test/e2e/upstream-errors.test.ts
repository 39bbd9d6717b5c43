// When the data plane cannot get an answer from a backend (none healthy, nothing listens, or it
// answers too late) it answers itself; the caller must still get an error object in its own API
// format that its SDK parses, naming nothing internal. Through `sluice run` with the emulator
// modelling the newest Envoy release: those local replies never reach the extproc (its stream
// just ends, Envoy 1.34+), and Envoy shapes them with the operator's local_reply_config. A
// provider's own errors must reach the caller as the provider sent them.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { startMockProvider, type MockProvider } from '../../operator/mock-provider/provider.js';
import {
  freePort,
  KEYS,
  secretDoc,
  serviceDocs,
  startYamlGateway,
  until,
  type YamlGateway,
  failure,
  sdkClients,
} from './harness.js';

function route(
  name: string,
  model: string,
  provider: 'openai' | 'anthropic',
  service: string,
  extra: Record<string, unknown> = {},
): unknown {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'AIRoute',
    metadata: { name, namespace: 'e2e' },
    spec: {
      models: [{ exact: model }],
      backends: [
        {
          name: provider,
          provider,
          endpoint: { service: { name: service, port: 80 } },
          credential: { secretRef: { name: provider } },
        },
      ],
      ...extra,
    },
  };
}

/** A Service whose one endpoint is not ready: the cluster has no healthy host. */
function unreadyService(name: string, port: number): unknown[] {
  return [
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name, namespace: 'e2e' },
      spec: { ports: [{ name: 'http', port: 80, targetPort: port }] },
    },
    {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: {
        name: `${name}-1`,
        namespace: 'e2e',
        labels: { 'kubernetes.io/service-name': name },
      },
      addressType: 'IPv4',
      ports: [{ name: 'http', port }],
      endpoints: [{ addresses: ['127.0.0.1'], conditions: { ready: false } }],
    },
  ];
}

function once(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { retry: { attempts: 0 }, ...extra };
}

const LEAKS = ['reset reason', 'upstream connect', 'UNABLE_TO_VERIFY', 'ECONNREFUSED', 'envoy'];

function assertNoLeak(body: unknown): void {
  const text = JSON.stringify(body);
  for (const leak of LEAKS) assert.ok(!text.includes(leak), `${leak} leaked: ${text}`);
}

describe('e2e: the data plane’s own errors in the caller’s API format', () => {
  let g: YamlGateway;
  let mock: MockProvider;
  let openai: OpenAI;
  let anthropic: Anthropic;

  before(async () => {
    mock = await startMockProvider({
      name: 'mock',
      auth: { bearer: KEYS.primary, anthropicKey: KEYS.anthropic },
    });
    // Nothing listens there: every connection is refused.
    const closed = await freePort();
    g = await startYamlGateway([
      route('down', 'gpt-down', 'openai', 'nowhere'),
      route('down-claude', 'claude-down', 'anthropic', 'nowhere'),
      // No retries: one slow attempt meets the route timeout; a provider's error is final.
      route('slow', 'gpt-slow', 'openai', 'mock', once({ timeout: '300ms' })),
      route('slow-claude', 'claude-slow', 'anthropic', 'mock', once({ timeout: '300ms' })),
      route('up', 'gpt-up', 'openai', 'mock', once()),
      route('empty', 'gpt-empty', 'openai', 'unready'),
      route('empty-claude', 'claude-empty', 'anthropic', 'unready'),
      ...unreadyService('unready', mock.port),
      route('up-claude', 'claude-up', 'anthropic', 'mock', once()),
      ...serviceDocs('nowhere', closed),
      ...serviceDocs('mock', mock.port),
      secretDoc('openai', KEYS.primary),
      secretDoc('anthropic', KEYS.anthropic),
    ]);
    ({ openai, anthropic } = sdkClients(g.gateway.url));
  });
  after(async () => {
    await g?.close();
    await mock?.close();
  });

  /**
   * The extproc assigned the request its id (the reply carries it: local_reply_config copies it
   * with %REQ()%), then never saw Envoy's reply: its stream just ended, so its access-log line
   * has no status. It was settled all the same.
   */
  async function extprocNeverSaw(id: string | null | undefined): Promise<void> {
    assert.ok(id, 'the reply names the request id');
    const line = await until(() => g.accessLog.find((l) => l['request_id'] === id));
    assert.equal(line['outcome'], 'aborted');
    assert.equal(line['status'], 0);
    assert.equal(line['error_code'], undefined);
  }

  it('connection refused, no fallback: 503 as an OpenAI error object', async () => {
    const e = await failure(
      openai.chat.completions.create({
        model: 'gpt-down',
        messages: [{ role: 'user', content: 'x' }],
      }),
    );
    assert.ok(e instanceof OpenAI.InternalServerError, String(e));
    assert.equal(e.status, 503);
    const body = e.error as { message?: unknown; type?: unknown; code?: unknown };
    assert.equal(body.code, 'upstream_unavailable');
    assert.equal(body.type, 'server_error');
    assert.equal(typeof body.message, 'string');
    assert.equal(e.headers?.get('x-sluice-error-code'), 'upstream_unavailable');
    assertNoLeak(e.error);
    assertNoLeak(e.message);
    await extprocNeverSaw(e.headers?.get('x-sluice-request-id'));
  });

  it('no healthy backend (no ready endpoint): 503 in both formats', async () => {
    const oa = await failure(
      openai.chat.completions.create({
        model: 'gpt-empty',
        messages: [{ role: 'user', content: 'x' }],
      }),
    );
    assert.ok(oa instanceof OpenAI.InternalServerError, String(oa));
    assert.equal(oa.status, 503);
    assert.equal((oa.error as { code?: unknown }).code, 'upstream_unavailable');
    assertNoLeak(oa.error);
    await extprocNeverSaw(oa.headers?.get('x-sluice-request-id'));
    const an = await failure(
      anthropic.messages.create({
        model: 'claude-empty',
        max_tokens: 16,
        messages: [{ role: 'user', content: 'x' }],
      }),
    );
    assert.ok(an instanceof Anthropic.InternalServerError, String(an));
    assert.equal(an.status, 503);
    const b = an.error as { type?: unknown; error?: { type?: unknown; code?: unknown } };
    assert.equal(b.type, 'error');
    assert.equal(b.error?.type, 'overloaded_error');
    assert.equal(b.error?.code, 'upstream_unavailable');
    await extprocNeverSaw(an.headers?.get('x-sluice-request-id'));
  });

  it('connection refused, no fallback: 503 as an Anthropic error object', async () => {
    const e = await failure(
      anthropic.messages.create({
        model: 'claude-down',
        max_tokens: 16,
        messages: [{ role: 'user', content: 'x' }],
      }),
    );
    assert.ok(e instanceof Anthropic.InternalServerError, String(e));
    assert.equal(e.status, 503);
    const body = e.error as { type?: unknown; error?: { type?: unknown; message?: unknown } };
    assert.equal(body.type, 'error');
    assert.equal(body.error?.type, 'overloaded_error');
    assert.equal(typeof body.error?.message, 'string');
    assertNoLeak(e.error);
    await extprocNeverSaw(e.headers?.get('x-sluice-request-id'));
  });

  it('the backend answers after the route timeout: 504 upstream_timeout in both formats', async () => {
    mock.enqueue({ delayMs: 5000 });
    const oa = await failure(
      openai.chat.completions.create({
        model: 'gpt-slow',
        messages: [{ role: 'user', content: 'x' }],
      }),
    );
    assert.ok(oa instanceof OpenAI.APIError, String(oa));
    assert.equal(oa.status, 504);
    assert.equal((oa.error as { code?: unknown }).code, 'upstream_timeout');
    assertNoLeak(oa.error);
    await extprocNeverSaw(oa.headers?.get('x-sluice-request-id'));

    mock.enqueue({ delayMs: 5000 });
    const an = await failure(
      anthropic.messages.create({
        model: 'claude-slow',
        max_tokens: 16,
        messages: [{ role: 'user', content: 'x' }],
      }),
    );
    assert.ok(an instanceof Anthropic.APIError, String(an));
    assert.equal(an.status, 504);
    const body = an.error as { type?: unknown; error?: { type?: unknown } };
    assert.equal(body.type, 'error');
    assert.equal(body.error?.type, 'api_error');
    assertNoLeak(an.error);
    await extprocNeverSaw(an.headers?.get('x-sluice-request-id'));
  });

  it("a provider's own errors reach the caller as the provider sent them", async () => {
    mock.enqueue({ status: 429, retryAfter: '7' });
    const limited = await failure(
      openai.chat.completions.create({
        model: 'gpt-up',
        messages: [{ role: 'user', content: 'x' }],
      }),
    );
    assert.ok(limited instanceof OpenAI.RateLimitError, String(limited));
    assert.equal((limited.error as { code?: unknown }).code, 'rate_limit_exceeded');
    assert.equal((limited.error as { message?: unknown }).message, 'mock failure 429');
    assert.equal(limited.headers?.get('retry-after'), '7');
    assert.equal(limited.headers?.get('x-sluice-error-code'), null);

    mock.enqueue({ status: 500 });
    const failed = await failure(
      anthropic.messages.create({
        model: 'claude-up',
        max_tokens: 16,
        messages: [{ role: 'user', content: 'x' }],
      }),
    );
    assert.ok(failed instanceof Anthropic.InternalServerError, String(failed));
    assert.equal(failed.status, 500);
    const body = failed.error as { error?: { message?: unknown } };
    assert.equal(body.error?.message, 'mock failure 500');
    assert.equal(failed.headers?.get('x-sluice-error-code'), null);
  });
});
