import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import { ExtProcFilter } from '../../operator/envoy-sim/ext-proc/index.js';
import { HealthClient } from './health-client.js';
import {
  CONFIG,
  chatHeaders,
  continued,
  ROUTER,
  sendRequest,
  startHarness,
  waitFor,
  type Harness,
} from './harness.js';

let h: Harness;
before(async () => {
  h = await startHarness();
});
after(async () => {
  await h.stop();
});

describe('conformance: lifecycle', () => {
  it('reports SERVING on the gRPC health service', async () => {
    const client = new HealthClient(h.ext.grpcAddress);
    assert.equal(await client.check(''), 'SERVING');
    assert.equal(await client.check('envoy.service.ext_proc.v3.ExternalProcessor'), 'SERVING');
    client.close();
  });

  it('serves /healthz, /readyz and /metrics on the admin port', async () => {
    const base = `http://${h.ext.adminAddress}`;
    assert.equal((await fetch(`${base}/healthz`)).status, 200);
    assert.equal((await fetch(`${base}/readyz`)).status, 200);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    assert.match(metrics, /sluice_config_info\{version="conformance-1"\} 1/);
    assert.equal((await fetch(`${base}/nope`)).status, 404);
  });

  it('applies a new config file while running and refuses a bad one whole', async () => {
    await writeFile(
      h.configPath,
      CONFIG.replace('version: conformance-1', 'version: conformance-2').replace(
        '{ exact: llama-3.1-8b }',
        '{ exact: llama-3.1-8b }, { exact: llama-new }',
      ),
    );
    await waitFor(() => h.ext.config().version === 'conformance-2');
    const { router, routed } = await sendRequest(
      h,
      chatHeaders(),
      { model: 'llama-new', messages: [] },
      'sluice/backend/vllm',
    );
    continued(routed);
    router.close();

    await writeFile(
      h.configPath,
      CONFIG.replace('version: conformance-1', 'version: broken').replace(
        'provider: anthropic',
        'provider: martian',
      ),
    );
    await waitFor(() => h.logs.some((l) => l.includes('config_rejected')));
    assert.equal(h.ext.config().version, 'conformance-2', 'the last good config stays');
    const metrics = await h.registry.metrics();
    assert.match(metrics, /sluice_config_reloads_total\{result="rejected"\} 1/);
    await writeFile(h.configPath, CONFIG);
    await waitFor(() => h.ext.config().version === 'conformance-1');
  });

  it('keeps no state once requests are over, under concurrency', async () => {
    await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const { router, routed } = await sendRequest(
          h,
          chatHeaders(),
          { model: 'gpt-4o-mini', messages: [{ role: 'user', content: `n${i}` }] },
          'sluice/backend/openai',
        );
        continued(routed);
        const body = Buffer.from(
          JSON.stringify({
            id: 'x',
            object: 'chat.completion',
            model: 'gpt-4o-mini',
            choices: [],
            usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
          }),
        );
        continued(
          await router.runResponse(
            [
              [':status', '200'],
              ['content-type', 'application/json'],
            ],
            [body],
          ),
        );
      }),
    );
    await waitFor(() => h.ext.pendingRequests === 0 && h.ext.activeStreams === 0);
  });
});

describe('conformance: graceful shutdown', () => {
  it('lets an open stream finish, then refuses new ones', async () => {
    const own = await startHarness();
    const { router, routed } = await sendRequest(
      own,
      chatHeaders(),
      { model: 'gpt-4o-mini', stream: true, messages: [] },
      'sluice/backend/openai',
    );
    continued(routed);
    const s = router.streamResponse([
      [':status', '200'],
      ['content-type', 'text/event-stream'],
    ]);
    await s.headers;
    const closing = own.ext.close();
    s.end(Buffer.from('data: {"choices":[{"delta":{"content":"late"}}]}\n\ndata: [DONE]\n\n'));
    const out: Buffer[] = [];
    for await (const c of s) out.push(c.data);
    assert.match(Buffer.concat(out).toString(), /late/);
    await closing;
    const f = new ExtProcFilter(own.client, { ...ROUTER, messageTimeoutMs: 500 });
    const r = await f.runRequest(chatHeaders(), [Buffer.from('{}')]);
    assert.equal(r.kind, 'local-reply', 'a stopped extproc fails requests closed');
    own.client.close();
    assert.equal(grpc.status.OK, 0);
  });
});
