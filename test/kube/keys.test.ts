// `sluice keys` against a real apiserver: the Secret it creates holds only the key's digest in the
// format the operator reads, list shows it, revoke deletes it, and the apiserver's refusals come
// back as one-line messages.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { ApiException, CoreV1Api } from '@kubernetes/client-node';
import { readConsumerSecret } from '../../operator/api/consumer-secret.js';
import { main } from '../../operator/keys/main.js';
import { startKubeEnv } from './env.js';
import type { KubeEnv } from './env.js';

let env: KubeEnv;
let core: CoreV1Api;
let nsCount = 0;

before(async () => {
  env = await startKubeEnv();
  core = env.kubeConfig.makeApiClient(CoreV1Api);
});
after(async () => {
  await env?.stop();
});

async function freshNamespace(name = `keys-${process.pid}-${++nsCount}`): Promise<string> {
  await core.createNamespace({ body: { metadata: { name } } });
  return name;
}

async function keys(argv: string[], kubeconfig: string | undefined = env.kubeconfigPath) {
  let out = '';
  let err = '';
  const code = await main(kubeconfig === undefined ? argv : [...argv, '--kubeconfig', kubeconfig], {
    out: (s) => (out += s),
    err: (s) => (err += s),
  });
  return { code, out, err };
}

describe('sluice keys on a cluster', () => {
  it('create → list shows it → the Secret has only the hash → revoke removes it', async () => {
    const ns = await freshNamespace();
    const created = await keys([
      'create',
      '--consumer',
      'alice',
      '--team',
      'red',
      '--expires',
      '30d',
      '--namespace',
      ns,
    ]);
    assert.equal(created.code, 0, created.err);
    const key = created.out.trim();
    assert.match(key, /^sk-sluice-[0-9A-Za-z]{43}$/);
    assert.match(created.err, /cannot be shown again/);

    const listed = await keys(['list', '--namespace', ns, '--json']);
    assert.equal(listed.code, 0, listed.err);
    const rows = (JSON.parse(listed.out) as { keys: Record<string, any>[] }).keys;
    assert.equal(rows.length, 1);
    const row = rows[0]!;
    assert.equal(row.consumer, 'alice');
    assert.equal(row.team, 'red');
    assert.equal(row.source, 'hash');
    assert.equal(row.expired, false);
    assert.ok(!listed.out.includes(key));
    const table = await keys(['list', '--namespace', ns]);
    assert.match(table.out, new RegExp(`^alice\\s+red\\s+${String(row.keyId)}\\s`, 'm'));

    const secret = await core.readNamespacedSecret({ name: String(row.secret), namespace: ns });
    assert.deepEqual(Object.keys(secret.data ?? {}), ['keyHash']);
    const digest = createHash('sha256').update(key).digest('hex');
    assert.equal(Buffer.from(secret.data!.keyHash!, 'base64').toString(), digest);
    assert.ok(!JSON.stringify(secret).includes(key), 'the raw key reached the cluster');
    assert.equal(secret.metadata?.labels?.['sluice.dev/key-id'], row.keyId);
    const read = readConsumerSecret(
      {
        namespace: ns,
        name: String(row.secret),
        labels: secret.metadata?.labels ?? {},
        annotations: secret.metadata?.annotations ?? {},
      },
      { keyHash: digest },
    );
    assert.ok(read.ok && read.key.consumer === 'alice' && read.key.expiresAt !== undefined);

    const revoked = await keys(['revoke', '--id', String(row.keyId), '--namespace', ns]);
    assert.equal(revoked.code, 0, revoked.err);
    await assert.rejects(
      core.readNamespacedSecret({ name: String(row.secret), namespace: ns }),
      (e: unknown) => e instanceof ApiException && e.code === 404,
    );
    const again = await keys(['revoke', '--id', String(row.keyId), '--namespace', ns]);
    assert.equal(again.code, 1);
    assert.match(again.err, /no key with id \S+ in namespace/);
  });

  it('uses the default kubeconfig loader and the sluice-system namespace by default', async () => {
    await freshNamespace('sluice-system');
    const saved = process.env.KUBECONFIG;
    process.env.KUBECONFIG = env.kubeconfigPath;
    try {
      const c1 = await keys(['create', '--consumer', 'bob'], undefined);
      const c2 = await keys(['create', '--consumer', 'bob'], undefined);
      assert.equal(c1.code + c2.code, 0, c1.err + c2.err);
      const all = await keys(['revoke', '--consumer', 'bob', '--all'], undefined);
      assert.equal(all.code, 0, all.err);
      assert.equal(all.out.trim().split('\n').length, 2);
    } finally {
      if (saved === undefined) delete process.env.KUBECONFIG;
      else process.env.KUBECONFIG = saved;
    }
    const left = await core.listNamespacedSecret({
      namespace: 'sluice-system',
      labelSelector: 'sluice.dev/consumer=bob',
    });
    assert.deepEqual(left.items, []);
  });

  it('reports the apiserver’s refusals in one line with exit status 1', async () => {
    const missing = await keys(['create', '--consumer', 'alice', '--namespace', 'no-such-ns']);
    assert.equal(missing.code, 1);
    assert.equal(missing.out, '', 'a key was printed that was never stored');
    assert.match(
      missing.err,
      /^sluice keys create: cannot create Secret no-such-ns\/sluice-key-alice-[a-z2-7]{8}: namespaces "no-such-ns" not found\n$/,
    );

    const ns = await freshNamespace();
    const mallory = await env.authenticateAs('mallory');
    const denied = await keys(['list', '--namespace', ns], mallory.kubeconfigPath);
    assert.equal(denied.code, 1);
    assert.match(
      denied.err,
      new RegExp(`^sluice keys list: cannot list secrets in namespace ${ns}: .*forbidden.*\\n$`),
    );
  });
});
