import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { readConsumerSecret } from '../api/consumer-secret.js';
import { loadResources } from '../source/yaml.js';
import { main } from './main.js';

const NOW = Date.parse('2026-03-31T12:00:00Z');
const sha = (k: string) => createHash('sha256').update(k).digest('hex');

let dir: string;
let n = 0;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-keys-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A path for one test: its own file, created by the test or by `create`. */
function fresh(): string {
  return join(dir, `keys-${++n}.yaml`);
}

interface Run {
  code: number;
  out: string;
  err: string;
}

async function keys(argv: string[], opts: { now?: number; random?: (b: number) => Buffer } = {}) {
  let out = '';
  let err = '';
  const code = await main(argv, {
    out: (s) => (out += s),
    err: (s) => (err += s),
    now: () => opts.now ?? NOW,
    ...(opts.random ? { random: opts.random } : {}),
  });
  return { code, out, err } satisfies Run;
}

async function create(file: string, ...flags: string[]) {
  const r = await keys(['create', '--file', file, ...flags]);
  assert.equal(r.code, 0, r.err);
  return r.out.trim();
}

async function listJson(file: string, ...flags: string[]) {
  const r = await keys(['list', '--file', file, '--json', ...flags]);
  assert.equal(r.code, 0, r.err);
  return (JSON.parse(r.out) as { keys: Record<string, unknown>[] }).keys;
}

const PROVIDER_SECRET = `# provider credentials: keep this comment
apiVersion: v1
kind: Secret
metadata:
  name: openai   # the route's credential
  namespace: team-a
stringData:
  apiKey: sk-provider-credential-0001
`;

describe('sluice keys create (file)', () => {
  it('prints the key once on stdout and stores only its digest, in a new 0600 file', async () => {
    const file = fresh();
    const r = await keys([
      'create',
      '--consumer',
      'alice',
      '--team',
      'red',
      '--expires',
      '30d',
      '--file',
      file,
    ]);
    assert.equal(r.code, 0, r.err);
    const key = r.out.trim();
    assert.match(key, /^sk-sluice-[0-9A-Za-z]{43}$/);
    assert.equal(r.out, `${key}\n`, 'stdout is the key alone');
    assert.match(r.err, /cannot be shown again/);
    assert.ok(!r.err.includes(key));
    const text = await readFile(file, 'utf8');
    assert.ok(!text.includes(key), 'the raw key was written');
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    const [doc] = parseAllDocuments(text) as { toJS(): any }[];
    const s = doc!.toJS();
    assert.equal(s.kind, 'Secret');
    assert.equal(s.metadata.namespace, 'sluice-system');
    assert.match(s.metadata.name, /^sluice-key-alice-[a-z2-7]{8}$/);
    const id = s.metadata.labels['sluice.dev/key-id'];
    assert.deepEqual(s.metadata.labels, {
      'sluice.dev/consumer': 'alice',
      'sluice.dev/team': 'red',
      'sluice.dev/key-id': id,
    });
    assert.deepEqual(s.metadata.annotations, {
      'sluice.dev/created-at': '2026-03-31T12:00:00Z',
      'sluice.dev/expires-at': '2026-04-30T12:00:00Z',
    });
    assert.deepEqual(Object.keys(s.data), ['keyHash']);
    assert.equal(Buffer.from(s.data.keyHash, 'base64').toString(), sha(key));
  });

  it('writes what `sluice run -f` loads and the operator reads as the consumer key', async () => {
    const file = fresh();
    const key = await create(file, '--consumer', 'svc.batch', '--namespace', 'keys');
    const { resources, problems } = await loadResources([file]);
    assert.deepEqual(problems, []);
    const [secret] = resources.secrets;
    assert.ok(secret);
    const read = readConsumerSecret(secret.metadata, secret.data);
    assert.ok(read.ok, read.ok ? '' : read.message);
    assert.equal(read.key.consumer, 'svc.batch');
    assert.equal(read.key.keyHash, sha(key));
    assert.equal(read.key.namespace, 'keys');
  });

  it('keeps the other documents and their comments, and leaves no temporary file', async () => {
    const file = fresh();
    await writeFile(file, PROVIDER_SECRET, { mode: 0o640 });
    await create(file, '--consumer', 'alice');
    await create(file, '--consumer', 'bob');
    const text = await readFile(file, 'utf8');
    assert.ok(text.startsWith('# provider credentials: keep this comment\n'), text);
    assert.match(text, /name: openai +# the route's credential/);
    assert.match(text, /apiKey: sk-provider-credential-0001/);
    const docs = parseAllDocuments(text) as { toJS(): any }[];
    assert.deepEqual(
      docs.map(
        (d) =>
          (d.toJS() as { metadata: { labels?: Record<string, string> } }).metadata.labels?.[
            'sluice.dev/consumer'
          ],
      ),
      [undefined, 'alice', 'bob'],
    );
    assert.equal((await stat(file)).mode & 0o777, 0o640, 'the file keeps its mode');
    assert.deepEqual(
      (await readdir(dir)).filter((f) => f.endsWith('.tmp')),
      [],
    );
  });

  it('prints JSON with --json, the key included once', async () => {
    const file = fresh();
    const r = await keys(['create', '--consumer', 'alice', '--file', file, '--json']);
    assert.equal(r.code, 0, r.err);
    const doc = JSON.parse(r.out) as Record<string, unknown>;
    assert.match(String(doc.key), /^sk-sluice-/);
    assert.deepEqual(
      { ...doc, key: '', keyId: '', secret: '' },
      {
        key: '',
        keyId: '',
        secret: '',
        consumer: 'alice',
        team: null,
        namespace: 'sluice-system',
        createdAt: '2026-03-31T12:00:00Z',
        expiresAt: null,
      },
    );
  });

  it('gives a new key the team of the consumer’s other keys, and refuses another team', async () => {
    const file = fresh();
    await create(file, '--consumer', 'alice', '--team', 'red');
    await create(file, '--consumer', 'alice');
    const rows = await listJson(file);
    assert.deepEqual(
      rows.map((r) => r.team),
      ['red', 'red'],
    );
    const before = await readFile(file, 'utf8');
    const r = await keys(['create', '--consumer', 'alice', '--team', 'blue', '--file', file]);
    assert.equal(r.code, 1);
    assert.match(r.err, /consumer "alice" has keys with team "red"/);
    assert.equal(await readFile(file, 'utf8'), before);
  });

  it('refuses an id already in use (a duplicate id)', async () => {
    const file = fresh();
    const same = (b: number) => Buffer.alloc(b, 7);
    assert.equal(
      (await keys(['create', '--consumer', 'a', '--file', file], { random: same })).code,
      0,
    );
    const r = await keys(['create', '--consumer', 'b', '--file', file], { random: same });
    assert.equal(r.code, 1);
    assert.match(r.err, /^sluice keys create: key id \S+ is already used by Secret/);
    assert.equal(r.out, '', 'no key was printed for a key that was not stored');
  });

  it('refuses bad flags with exit status 2 and writes nothing', async () => {
    const file = fresh();
    for (const argv of [
      ['create', '--file', file],
      ['create', '--consumer', '-alice', '--file', file],
      ['create', '--consumer', 'a b', '--file', file],
      ['create', '--consumer', 'x'.repeat(64), '--file', file],
      ['create', '--consumer', 'alice', '--team', 'red/blue', '--file', file],
      ['create', '--consumer', 'alice', '--expires', 'soon', '--file', file],
      ['create', '--consumer', 'alice', '--expires', '2020-01-01T00:00:00Z', '--file', file],
      ['create', '--consumer', 'alice', '--namespace', 'Not_A_Namespace', '--file', file],
      ['create', '--consumer', 'alice', '--file', file, '--kubeconfig', file],
      ['create', '--consumer', 'alice', 'positional', '--file', file],
      ['revoke', '--file', file],
      ['revoke', '--consumer', 'alice', '--file', file],
      ['revoke', '--all', '--file', file],
      ['revoke', '--id', 'abcdefgh', '--consumer', 'alice', '--all', '--file', file],
      ['revoke', '--id', 'NOT-AN-ID', '--file', file],
      ['rotate', '--file', file],
      [],
    ]) {
      const r = await keys(argv);
      assert.equal(r.code, 2, `${argv.join(' ')}: ${r.err}`);
      assert.equal(r.out, '');
    }
    await assert.rejects(stat(file), /ENOENT/);
  });

  it('says when --expires is in the past, by the command’s clock', async () => {
    const r = await keys([
      'create',
      '--consumer',
      'a',
      '--expires',
      '2026-03-31T11:59:59Z',
      '--file',
      fresh(),
    ]);
    assert.equal(r.code, 2);
    assert.match(r.err, /is not in the future/);
  });
});

describe('sluice keys list (file)', () => {
  it('shows consumer, team, id, created, expiry and source; never a key or a digest', async () => {
    const file = fresh();
    const k1 = await create(file, '--consumer', 'bob', '--expires', '12h');
    const k2 = await create(file, '--consumer', 'alice', '--team', 'red');
    const handMade = 'sk-hand-made-key-0123456789';
    await writeFile(
      file,
      `${await readFile(file, 'utf8')}---
apiVersion: v1
kind: Secret
metadata:
  name: carol-key
  namespace: sluice-system
  labels: { sluice.dev/consumer: carol }
stringData:
  key: ${handMade}
---
apiVersion: v1
kind: Secret
metadata:
  name: dave-key
  namespace: sluice-system
  labels: { sluice.dev/consumer: dave }
data:
  keyHash: not base64!
---
apiVersion: v1
kind: Secret
metadata:
  name: elsewhere
  namespace: other
  labels: { sluice.dev/consumer: erin }
stringData:
  keyHash: ${sha('x')}
`,
    );
    const later = NOW + 13 * 3_600_000;
    const r = await keys(['list', '--file', file], { now: later });
    assert.equal(r.code, 0, r.err);
    const lines = r.out.trimEnd().split('\n');
    assert.match(lines[0]!, /^CONSUMER\s+TEAM\s+KEY ID\s+CREATED\s+EXPIRES\s+SOURCE$/);
    assert.match(lines[1]!, /^alice\s+red\s+[a-z2-7]{8}\s+2026-03-31T12:00:00Z\s+never\s+hash$/);
    assert.match(
      lines[2]!,
      /^bob\s+-\s+[a-z2-7]{8}\s+2026-03-31T12:00:00Z\s+2026-04-01T00:00:00Z \(expired\)\s+hash$/,
    );
    assert.match(lines[3]!, /^carol\s+-\s+-\s+-\s+never\s+raw key$/);
    assert.match(lines[4]!, /^dave\s+.*invalid: data\.keyHash is not base64/);
    assert.equal(lines.length, 5, 'a Secret of another namespace was listed');
    for (const secret of [k1, k2, handMade, sha(k1), sha(k2), sha(handMade)]) {
      assert.ok(!r.out.includes(secret), 'list printed a key or a digest');
    }
    const rows = await listJson(file, '--consumer', 'bob');
    assert.equal(rows.length, 1);
    assert.deepEqual(Object.keys(rows[0]!).sort(), [
      'consumer',
      'createdAt',
      'expired',
      'expiresAt',
      'keyId',
      'namespace',
      'secret',
      'source',
    ]);
    assert.equal((await listJson(file, '--namespace', 'other'))[0]?.consumer, 'erin');
  });

  it('refuses a missing file, invalid YAML, other kinds and unreadable paths, changing nothing', async () => {
    const missing = await keys(['list', '--file', join(dir, 'nope.yaml')]);
    assert.equal(missing.code, 1);
    assert.match(missing.err, /nope\.yaml does not exist/);

    const cases: [string, RegExp][] = [
      ['a: b: c\npassword: hunter2\n', /is not valid YAML: Nested mappings/],
      [
        'apiVersion: v1\nkind: ConfigMap\nmetadata: { name: x }\n',
        /document 1 is a ConfigMap, not a v1 Secret/,
      ],
      [`${PROVIDER_SECRET}---\n- just\n- a list\n`, /document 2 is not a mapping/],
      ['apiVersion: v1\nkind: Secret\nmetadata: {}\n', /without metadata\.name/],
    ];
    for (const [content, message] of cases) {
      const file = fresh();
      await writeFile(file, content);
      for (const argv of [
        ['list', '--file', file],
        ['create', '--consumer', 'alice', '--file', file],
        ['revoke', '--id', 'abcdefgh', '--file', file],
      ]) {
        const r = await keys(argv);
        assert.equal(r.code, 1, `${argv[0]} ${content}`);
        assert.match(r.err, message);
        assert.equal(r.err.split('\n').filter(Boolean).length, 1, 'one line');
        assert.ok(!r.err.includes('hunter2'), 'the message quoted the file');
        assert.equal(r.out, '');
      }
      assert.equal(await readFile(file, 'utf8'), content, 'the file was rewritten');
    }

    const directory = join(dir, 'a-directory');
    await mkdir(directory);
    const r = await keys(['list', '--file', directory]);
    assert.equal(r.code, 1);
    assert.match(r.err, /cannot be read \(EISDIR\)/);
  });
});

describe('sluice keys revoke (file)', () => {
  it('removes one key by id, then every key of a consumer, keeping everything else', async () => {
    const file = fresh();
    await writeFile(file, PROVIDER_SECRET);
    await create(file, '--consumer', 'alice');
    await create(file, '--consumer', 'alice');
    await create(file, '--consumer', 'bob');
    const [first] = await listJson(file, '--consumer', 'alice');
    const r = await keys(['revoke', '--id', String(first!.keyId), '--file', file]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, new RegExp(`Revoked key ${String(first!.keyId)} of consumer alice`));
    assert.equal((await listJson(file, '--consumer', 'alice')).length, 1);

    const all = await keys(['revoke', '--consumer', 'alice', '--all', '--file', file]);
    assert.equal(all.code, 0, all.err);
    assert.deepEqual(
      (await listJson(file)).map((k) => k.consumer),
      ['bob'],
    );
    const text = await readFile(file, 'utf8');
    assert.ok(text.startsWith('# provider credentials: keep this comment\n'));
    assert.match(text, /apiKey: sk-provider-credential-0001/);
  });

  it('says so for an unknown id, a consumer without keys, and an id on two Secrets', async () => {
    const file = fresh();
    await create(file, '--consumer', 'alice');
    const unknown = await keys(['revoke', '--id', 'abcdefgh', '--file', file]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.err, /no key with id abcdefgh in namespace sluice-system/);
    const none = await keys(['revoke', '--consumer', 'bob', '--all', '--file', file]);
    assert.equal(none.code, 1);
    assert.match(none.err, /consumer "bob" has no keys/);

    // A Secret copied by hand keeps the id: revoking by id must not guess which one is meant.
    const [row] = await listJson(file);
    const text = await readFile(file, 'utf8');
    await writeFile(file, `${text}---\n${text.replace(String(row!.secret), 'copied-by-hand')}`);
    const dup = await keys(['revoke', '--id', String(row!.keyId), '--file', file]);
    assert.equal(dup.code, 1);
    assert.match(dup.err, /is on 2 Secrets .*copied-by-hand.*; delete the one you mean by name/);
    assert.equal((await listJson(file)).length, 2);
  });
});

describe('sluice keys against a cluster', () => {
  it('says plainly when the cluster cannot be reached', async () => {
    const kubeconfig = join(dir, 'kubeconfig');
    await writeFile(
      kubeconfig,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'c', cluster: { server: 'https://127.0.0.1:1' } }],
        users: [{ name: 'u', user: { token: 'kube-token-do-not-print' } }],
        contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
        'current-context': 'x',
      }),
    );
    for (const argv of [
      ['list'],
      ['create', '--consumer', 'alice'],
      ['revoke', '--consumer', 'alice', '--all'],
    ]) {
      const r = await keys([...argv, '--kubeconfig', kubeconfig]);
      assert.equal(r.code, 1, r.err);
      assert.equal(
        r.err,
        `sluice keys ${argv[0]}: cannot reach the Kubernetes API at https://127.0.0.1:1 (ECONNREFUSED); check the kubeconfig and that the cluster is up\n`,
      );
      assert.equal(r.out, '');
    }
  });

  it('refuses a kubeconfig it cannot read without quoting it', async () => {
    const bad = join(dir, 'bad-kubeconfig');
    await writeFile(bad, 'users: [ token: "kube-token-do-not-print"');
    const r = await keys(['list', '--kubeconfig', bad]);
    assert.equal(r.code, 1);
    assert.equal(r.err, 'sluice keys list: the kubeconfig cannot be read\n');
  });
});
