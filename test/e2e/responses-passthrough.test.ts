// Stored responses on a backend that keeps them itself (OpenAI), through `sluice run` with the
// official `openai` SDK: the gateway records who owns each response id and which backend made it,
// and sends the owner's retrieve, delete, input-items listing and previous_response_id turn back
// to that backend — even on a route that spreads new requests over two OpenAI accounts (two
// mocks, each keeping only its own responses). Another key gets 404 and the provider never sees
// the request; a delete the provider confirms forgets the id; a backend gone from the config
// answers 409 and nothing is sent.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import { main as keysMain } from '../../operator/keys/main.js';
import { startMockProvider, type MockProvider } from '../../operator/mock-provider/provider.js';
import { failure, secretDoc, serviceDocs, startYamlGateway, type YamlGateway } from './harness.js';

const UPSTREAM = { a: 'sk-upstream-account-a', b: 'sk-upstream-account-b' };

function backend(name: 'a' | 'b') {
  return {
    name,
    provider: 'openai',
    endpoint: { service: { name: `mock-${name}`, port: 80 } },
    credential: { secretRef: { name: `openai-${name}` } },
  };
}

function route(backends: ('a' | 'b')[]) {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'AIRoute',
    metadata: { name: 'gpt', namespace: 'e2e' },
    spec: { models: [{ exact: 'gpt-4o-mini' }], backends: backends.map(backend) },
  };
}

const identity = {
  apiVersion: 'sluice.dev/v1alpha1',
  kind: 'AIPolicy',
  metadata: { name: 'identity', namespace: 'e2e' },
  spec: { targetRefs: [{ name: 'gpt' }], consumers: { required: true, keys: {} } },
};

async function keys(argv: string[]): Promise<string> {
  let out = '';
  let err = '';
  const code = await keysMain(argv, { out: (s) => (out += s), err: (s) => (err += s) });
  assert.equal(code, 0, `sluice keys ${argv[0]}: ${err}`);
  return out;
}

function status(e: unknown): number | undefined {
  const s: unknown = e instanceof OpenAI.APIError ? e.status : undefined;
  return typeof s === 'number' ? s : undefined;
}

function code(e: unknown): string | null | undefined {
  return e instanceof OpenAI.APIError ? e.code : undefined;
}

describe('e2e: stored responses on a backend that keeps them (OpenAI)', () => {
  const mocks: Record<'a' | 'b', MockProvider> = {} as Record<'a' | 'b', MockProvider>;
  let g: YamlGateway;
  const key: Record<'alice' | 'bob', string> = { alice: '', bob: '' };
  const docs = (backends: ('a' | 'b')[]) => [
    route(backends),
    identity,
    secretDoc('openai-a', UPSTREAM.a),
    secretDoc('openai-b', UPSTREAM.b),
    ...serviceDocs('mock-a', mocks.a.port),
    ...serviceDocs('mock-b', mocks.b.port),
  ];

  before(async () => {
    mocks.a = await startMockProvider({ name: 'a', auth: { bearer: UPSTREAM.a } });
    mocks.b = await startMockProvider({ name: 'b', auth: { bearer: UPSTREAM.b } });
    g = await startYamlGateway(docs(['a', 'b']), {
      setup: async (dir) => {
        const file = join(dir, 'keys.yaml');
        for (const consumer of ['alice', 'bob'] as const) {
          const out = await keys(['create', '--consumer', consumer, '--file', file, '--json']);
          key[consumer] = (JSON.parse(out) as { key: string }).key;
        }
      },
    });
  });
  after(async () => {
    await g?.close();
    await mocks.a?.close();
    await mocks.b?.close();
  });

  const client = (apiKey: string) =>
    new OpenAI({ baseURL: `${g.gateway.url}/v1`, apiKey, maxRetries: 0, timeout: 15_000 });
  const take = () => [...mocks.a.take(), ...mocks.b.take()];

  /** Responses created until both accounts hold some, and which account holds each. */
  async function spread(): Promise<Map<string, 'a' | 'b'>> {
    const where = new Map<string, 'a' | 'b'>();
    for (let i = 0; i < 40 && new Set(where.values()).size < 2; i++) {
      const r = await client(key.alice).responses.create({
        model: 'gpt-4o-mini',
        input: `question ${i}`,
      });
      const hit = take();
      assert.equal(hit.length, 1);
      where.set(r.id, hit[0]!.headers['authorization'] === `Bearer ${UPSTREAM.a}` ? 'a' : 'b');
    }
    assert.equal(new Set(where.values()).size, 2, 'both accounts answered some');
    return where;
  }

  it('retrieves each response and its input items from the account that made it', async () => {
    const where = await spread();
    for (const [id, account] of where) {
      const got = await client(key.alice).responses.retrieve(id);
      assert.equal(got.id, id);
      assert.match(got.output_text, /^echo: question \d+$/);
      const items = await client(key.alice).responses.inputItems.list(id, {
        limit: 5,
        order: 'asc',
      });
      const first = items.data[0] as { type: string; content: { text: string }[] };
      assert.equal(first.type, 'message');
      assert.match(first.content[0]!.text, /^question \d+$/);
      const seen = take();
      assert.deepEqual(
        seen.map((c) => [c.method, c.path, c.headers['authorization']]),
        [
          ['GET', `/v1/responses/${id}`, `Bearer ${UPSTREAM[account]}`],
          [
            'GET',
            `/v1/responses/${id}/input_items?limit=5&order=asc`,
            `Bearer ${UPSTREAM[account]}`,
          ],
        ],
      );
      for (const c of seen) {
        // Nothing of the gateway's own reaches the provider: not the caller's key, not its pins.
        assert.ok(!Object.keys(c.headers).some((h) => h.startsWith('x-sluice-')), c.path);
        assert.equal(c.body.length, 0);
      }
    }
  });

  it('continues each response at the account that made it (previous_response_id)', async () => {
    const where = await spread();
    for (const [id, account] of where) {
      const next = await client(key.alice).responses.create({
        model: 'gpt-4o-mini',
        previous_response_id: id,
        input: 'and then?',
      });
      assert.equal(next.output_text, 'echo: and then?');
      const seen = take();
      assert.equal(seen.length, 1);
      assert.equal(seen[0]!.headers['authorization'], `Bearer ${UPSTREAM[account]}`);
      assert.equal(seen[0]!.json?.['previous_response_id'], id);
      // The new response is kept where it was made, and reached there too.
      assert.equal((await client(key.alice).responses.retrieve(next.id)).id, next.id);
      assert.equal(take()[0]!.headers['authorization'], `Bearer ${UPSTREAM[account]}`);
    }
    // Another key cannot continue it.
    const [id] = [...where.keys()];
    const e = await failure(
      client(key.bob).responses.create({
        model: 'gpt-4o-mini',
        previous_response_id: id!,
        input: 'x',
      }),
    );
    assert.equal(status(e), 404);
    assert.deepEqual(take(), []);
  });

  it('answers another key 404 and no key 401 for every use of the id; the provider sees none', async () => {
    const [id] = [...(await spread()).keys()];
    for (const use of [
      (c: OpenAI): Promise<unknown> => c.responses.retrieve(id!),
      (c: OpenAI) => c.responses.delete(id!),
      (c: OpenAI) => c.responses.inputItems.list(id!),
    ]) {
      const e = await failure(use(client(key.bob)));
      assert.equal(status(e), 404);
      assert.equal(code(e), 'response_not_found');
    }
    // No key at all (the SDK insists on one, so a plain request): refused before any lookup.
    for (const [method, path] of [
      ['GET', `/v1/responses/${id}`],
      ['DELETE', `/v1/responses/${id}`],
      ['GET', `/v1/responses/${id}/input_items`],
    ] as const) {
      const r = await fetch(`${g.gateway.url}${path}`, { method });
      assert.equal(r.status, 401);
      const body = (await r.json()) as { error: { type: string } };
      assert.equal(typeof body.error.type, 'string');
    }
    assert.deepEqual(take(), []);
    // Still there for its owner.
    assert.equal((await client(key.alice).responses.retrieve(id!)).id, id);
    take();
  });

  it('deletes at the provider, then forgets the id; a failed delete keeps it', async () => {
    const where = await spread();
    const [id, account] = [...where][0]!;
    mocks[account].enqueue({ status: 500 });
    const failed = await failure(client(key.alice).responses.delete(id));
    assert.equal(status(failed), 500);
    assert.equal((await client(key.alice).responses.retrieve(id)).id, id);
    take();
    await client(key.alice).responses.delete(id);
    assert.deepEqual(
      take().map((c) => [c.method, c.path]),
      [['DELETE', `/v1/responses/${id}`]],
    );
    // The marker is gone: the gateway answers 404 itself, the provider is not asked.
    const e = await failure(client(key.alice).responses.retrieve(id));
    assert.equal(status(e), 404);
    assert.equal(code(e), 'response_not_found');
    assert.deepEqual(take(), []);
  });

  it('answers 409 response_unreachable once the backend is gone from the route, sending nothing', async () => {
    const where = await spread();
    const onB = [...where].find(([, acc]) => acc === 'b')![0];
    await g.write(docs(['a']));
    // The route now has one backend: wait until the extproc serves that config.
    for (let i = 0; i < 100; i++) {
      const e = await client(key.alice)
        .responses.retrieve(onB)
        .then(
          () => undefined,
          (err: unknown) => err,
        );
      if (status(e) === 409) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    take();
    const e = await failure(client(key.alice).responses.retrieve(onB));
    assert.equal(status(e), 409);
    assert.equal(code(e), 'response_unreachable');
    assert.deepEqual(take(), []);
    await g.write(docs(['a', 'b']));
  });
});
