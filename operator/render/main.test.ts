import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { main } from './main.js';

const cases = fileURLToPath(new URL('../../test/golden/cases/', import.meta.url));

async function render(args: string[]) {
  let out = '';
  let err = '';
  const code = await main(args, { out: (s) => (out += s), err: (s) => (err += s) });
  return { code, out, err };
}

describe('sluice render', () => {
  it('prints statuses, Envoy resources and the extproc config, without secrets', async () => {
    const r = await render(['-f', `${cases}openai-single.in.yaml`]);
    assert.equal(r.code, 0, r.err);
    const doc = parse(r.out);
    assert.ok(doc.envoy.listeners.length === 1);
    assert.ok(doc.envoy.clusters.length >= 2);
    assert.equal(doc.extproc.apiVersion, 'sluice.dev/extproc/v1');
    for (const b of doc.extproc.backends) {
      if (b.credential) assert.match(b.credential.value, /^<redacted:/);
    }
    assert.doesNotMatch(r.out, /sk-[A-Za-z0-9]{8}/);
  });

  it('exits 1 when a resource is not Accepted, and still prints the rest', async () => {
    const r = await render(['-f', `${cases}missing-secret.in.yaml`, '--only', 'status']);
    assert.equal(r.code, 1);
    const doc = parse(r.out) as {
      statuses: { conditions: { reason: string }[] }[];
      envoy?: unknown;
    };
    const reasons = doc.statuses.flatMap((s) => s.conditions.map((c) => c.reason));
    assert.ok(reasons.includes('SecretNotFound'), reasons.join(', '));
    assert.equal(doc.envoy, undefined);
  });

  it('refuses bad flags with usage', async () => {
    assert.equal((await render([])).code, 2);
    assert.equal((await render(['-f', 'x', '--only', 'nope'])).code, 2);
    assert.equal((await render(['-f', 'x', '--port', '70000'])).code, 2);
  });
});
