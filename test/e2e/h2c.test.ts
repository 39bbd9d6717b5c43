// HTTP/2 cleartext with prior knowledge (curl --http2-prior-knowledge, node:http2, gRPC-style
// clients) on `sluice run`'s listener, next to HTTP/1.1 on the same port, as Envoy's HTTP
// connection manager with codec AUTO serves both: a JSON answer, a streamed (SSE) answer, and an
// error in the caller's format.
import assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import { after, before, describe, it } from 'node:test';
import { startMockProvider, type MockProvider } from '../../operator/mock-provider/provider.js';
import {
  KEYS,
  secretDoc,
  serviceDocs,
  startYamlGateway,
  sdkClients,
  type YamlGateway,
} from './harness.js';

interface H2Response {
  status: number;
  headers: http2.IncomingHttpHeaders;
  chunks: Buffer[];
}

function h2request(url: string, path: string, body: unknown): Promise<H2Response> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(url);
    session.on('error', reject);
    const req = session.request({
      ':method': 'POST',
      ':path': path,
      'content-type': 'application/json',
      authorization: `Bearer ${KEYS.client}`,
    });
    const chunks: Buffer[] = [];
    let status = 0;
    let headers: http2.IncomingHttpHeaders = {};
    req.on('response', (h) => {
      headers = h;
      status = Number(h[':status']);
    });
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      session.close();
      resolve({ status, headers, chunks });
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

describe('e2e: HTTP/2 cleartext (prior knowledge) on the listener', () => {
  let g: YamlGateway;
  let mock: MockProvider;

  before(async () => {
    mock = await startMockProvider({ name: 'mock', auth: { bearer: KEYS.primary } });
    g = await startYamlGateway([
      {
        apiVersion: 'sluice.dev/v1alpha1',
        kind: 'AIRoute',
        metadata: { name: 'gpt', namespace: 'e2e' },
        spec: {
          models: [{ exact: 'gpt-4o-mini' }],
          backends: [
            {
              name: 'openai',
              provider: 'openai',
              endpoint: { service: { name: 'mock', port: 80 } },
              credential: { secretRef: { name: 'openai' } },
            },
          ],
        },
      },
      ...serviceDocs('mock', mock.port),
      secretDoc('openai', KEYS.primary),
    ]);
  });
  after(async () => {
    await g?.close();
    await mock?.close();
  });

  const chat = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hello' }] };

  it('answers a JSON request over h2c', async () => {
    const r = await h2request(g.gateway.url, '/v1/chat/completions', chat);
    assert.equal(r.status, 200);
    const body = JSON.parse(Buffer.concat(r.chunks).toString()) as {
      choices: { message: { content: string } }[];
    };
    assert.equal(typeof body.choices[0]!.message.content, 'string');
    assert.ok(r.headers['x-sluice-request-id']);
  });

  it('streams an SSE answer over h2c, chunk by chunk', async () => {
    const r = await h2request(g.gateway.url, '/v1/chat/completions', { ...chat, stream: true });
    assert.equal(r.status, 200);
    assert.match(String(r.headers['content-type']), /^text\/event-stream/);
    const text = Buffer.concat(r.chunks).toString();
    assert.match(text, /^data: /m);
    assert.match(text, /data: \[DONE\]/);
  });

  it('refuses a bad request over h2c in the caller’s format', async () => {
    const r = await h2request(g.gateway.url, '/v1/chat/completions', { messages: [] });
    assert.equal(r.status, 400);
    const body = JSON.parse(Buffer.concat(r.chunks).toString()) as { error: { code: string } };
    assert.equal(body.error.code, 'missing_model');
  });

  it('still serves HTTP/1.1 on the same port', async () => {
    const { openai } = sdkClients(g.gateway.url);
    const r = await openai.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Hello' }],
    });
    assert.equal(typeof r.choices[0]!.message.content, 'string');
  });
});
