// An external (https://) backend reached over TLS: the gateway sends the backend's host as SNI,
// verifies the certificate against the trusted CA the compilation was given, and checks the
// host name against the certificate's DNS SANs. A certificate that fails either check ends the
// request with a 503 in the caller's own error format, never a hang.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, mock } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { main as runMain } from '../../operator/standalone/main.js';
import { startMockProvider, type MockProvider } from '../../operator/mock-provider/provider.js';
import { fileURLToPath } from 'node:url';
import {
  freePort,
  KEYS,
  secretDoc,
  startYamlGateway,
  until,
  type YamlGateway,
  sdkClients,
} from './harness.js';

// The openssl CLI, as the kube tier uses for its CA: Node can make keys but not certificates,
// and no dependency is needed for a handful of certificates. Our own config, so leaf
// certificates don't inherit a system openssl.cnf's CA:TRUE default.
const OPENSSL_CNF = `[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[localhost]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost
authorityKeyIdentifier = keyid
[elsewhere]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:provider.example
authorityKeyIdentifier = keyid
`;

// P-256: generated in milliseconds, where RSA takes a noticeable share of a second.
const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

function openssl(args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { cwd }, (err, _out, stderr) => {
      if (!err) return resolve();
      const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
      reject(
        new Error(
          missing
            ? 'the TLS e2e test needs the openssl command on PATH to make its test CA'
            : `openssl ${args[0]} failed: ${stderr}`,
        ),
      );
    });
  });
}

async function selfSignedCa(dir: string, name: string): Promise<void> {
  await openssl(
    [
      'req',
      '-x509',
      '-config',
      'openssl.cnf',
      '-extensions',
      'ca',
      '-subj',
      `/CN=${name}`,
      ...EC_KEY,
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.crt`,
      '-days',
      '2',
    ],
    dir,
  );
}

async function leaf(dir: string, name: string, profile: string, ca: string) {
  await openssl(
    [
      'req',
      '-x509',
      '-config',
      'openssl.cnf',
      '-extensions',
      profile,
      '-subj',
      `/CN=${name}`,
      ...EC_KEY,
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.crt`,
      '-days',
      '2',
      '-CA',
      `${ca}.crt`,
      '-CAkey',
      `${ca}.key`,
    ],
    dir,
  );
  const [key, cert] = await Promise.all([
    readFile(join(dir, `${name}.key`), 'utf8'),
    readFile(join(dir, `${name}.crt`), 'utf8'),
  ]);
  return { key, cert };
}

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

interface Cli {
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  stderr(): string;
  stop(): void;
}

/** `sluice run …` as a user starts it, from source through tsx. */
function sluiceRun(args: string[]): Cli {
  const child = spawn(process.execPath, ['--import', 'tsx', 'operator/cli.ts', 'run', ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr.on('data', (c: Buffer) => (err += c.toString('utf8')));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return {
    exited,
    stderr: () => err,
    stop: () => {
      if (child.exitCode === null) child.kill('SIGTERM');
    },
  };
}

/** The data plane's own wording and the TLS failure must stay out of what the caller sees. */
function assertNoInternals(v: unknown): void {
  const text = JSON.stringify(v);
  for (const leak of ['reset reason', 'upstream connect', 'UNABLE_TO_VERIFY', 'certificate']) {
    assert.ok(!text.includes(leak), `${leak} reached the caller: ${text}`);
  }
}

function externalRoute(
  name: string,
  model: string,
  provider: 'openai' | 'anthropic',
  port: number,
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
          endpoint: { url: `https://localhost:${port}/v1` },
          credential: { secretRef: { name: provider } },
        },
      ],
      // A refused handshake is a connect failure, which is retried: the retry must fail the same
      // way and still end in an answer.
      retry: { attempts: 1, retryOn: ['connect-failure'] },
    },
  };
}

describe('e2e: TLS to an https:// backend with a test CA', () => {
  let pki: string;
  let trusted: MockProvider;
  let untrusted: MockProvider;
  let wrongHost: MockProvider;
  let g: YamlGateway;
  let openai: OpenAI;
  let anthropic: Anthropic;

  before(async () => {
    pki = await mkdtemp(join(tmpdir(), 'sluice-e2e-pki-'));
    await writeFile(join(pki, 'openssl.cnf'), OPENSSL_CNF);
    await Promise.all([selfSignedCa(pki, 'test-ca'), selfSignedCa(pki, 'other-ca')]);
    const [good, foreign, elsewhere] = await Promise.all([
      leaf(pki, 'good', 'localhost', 'test-ca'),
      leaf(pki, 'foreign', 'localhost', 'other-ca'),
      leaf(pki, 'elsewhere', 'elsewhere', 'test-ca'),
    ]);
    const auth = { bearer: KEYS.primary, anthropicKey: KEYS.anthropic };
    [trusted, untrusted, wrongHost] = await Promise.all([
      startMockProvider({ name: 'trusted', auth, tls: good }),
      startMockProvider({ name: 'untrusted', auth, tls: foreign }),
      startMockProvider({ name: 'wrong-host', auth, tls: elsewhere }),
    ]);
    g = await startYamlGateway(
      [
        externalRoute('tls', 'gpt-tls', 'openai', trusted.port),
        externalRoute('tls-claude', 'claude-tls', 'anthropic', trusted.port),
        externalRoute('untrusted', 'gpt-untrusted', 'openai', untrusted.port),
        externalRoute('untrusted-claude', 'claude-untrusted', 'anthropic', untrusted.port),
        externalRoute('wrong-host', 'gpt-wrong-host', 'openai', wrongHost.port),
        secretDoc('openai', KEYS.primary),
        secretDoc('anthropic', KEYS.anthropic),
      ],
      { compile: { caFile: join(pki, 'test-ca.crt') } },
    );
    ({ openai, anthropic } = sdkClients(g.gateway.url));
  });
  after(async () => {
    await g?.close();
    await Promise.all([trusted?.close(), untrusted?.close(), wrongHost?.close()]);
    if (pki) await rm(pki, { recursive: true, force: true });
  });

  it('a certificate from the trusted CA for the host: the request succeeds, SNI is the host', async () => {
    trusted.take();
    const r = await openai.chat.completions.create({
      model: 'gpt-tls',
      messages: [{ role: 'user', content: 'over tls' }],
    });
    assert.equal(r.choices[0]?.message.content, 'echo: over tls');
    const m = await anthropic.messages.create({
      model: 'claude-tls',
      max_tokens: 32,
      messages: [{ role: 'user', content: 'claude over tls' }],
    });
    assert.equal(m.content[0]?.type === 'text' ? m.content[0].text : '', 'echo: claude over tls');
    const seen = trusted.take();
    assert.equal(seen.length, 2);
    for (const c of seen) {
      assert.equal(c.servername, 'localhost');
      assert.equal(c.headers['host'], `localhost:${trusted.port}`);
    }
    assert.equal(seen[0]?.headers['authorization'], `Bearer ${KEYS.primary}`);
    assert.equal(seen[1]?.headers['x-api-key'], KEYS.anthropic);
  });

  it('a certificate from another CA: 503 for both APIs, nothing reaches the backend', async () => {
    untrusted.take();
    await assert.rejects(
      openai.chat.completions.create({
        model: 'gpt-untrusted',
        messages: [{ role: 'user', content: 'x' }],
      }),
      (e: unknown) => e instanceof OpenAI.APIError && e.status === 503,
    );
    await assert.rejects(
      anthropic.messages.create({
        model: 'claude-untrusted',
        max_tokens: 32,
        messages: [{ role: 'user', content: 'x' }],
      }),
      (e: unknown) => e instanceof Anthropic.APIError && e.status === 503,
    );
    assert.deepEqual(untrusted.take(), []);
  });

  it("the data plane's 503 is an error object in the caller's API format, naming no internals", async () => {
    const oa = await openai.chat.completions
      .create({ model: 'gpt-untrusted', messages: [{ role: 'user', content: 'x' }] })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    assert.ok(oa instanceof OpenAI.APIError && oa.status === 503);
    // The SDK exposes the body's `error` member: message, type and the stable code.
    const oaBody = oa.error as { message?: unknown; code?: unknown } | undefined;
    assert.equal(typeof oaBody?.message, 'string');
    assert.equal(oaBody?.code, 'upstream_unavailable');
    assert.equal(oa.headers?.get('x-sluice-error-code'), 'upstream_unavailable');
    assertNoInternals(oa.error);
    assertNoInternals(oa.message);

    const an = await anthropic.messages
      .create({
        model: 'claude-untrusted',
        max_tokens: 32,
        messages: [{ role: 'user', content: 'x' }],
      })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    assert.ok(an instanceof Anthropic.APIError && an.status === 503);
    const anBody = an.error as { type?: unknown; error?: { type?: unknown; message?: unknown } };
    assert.equal(anBody?.type, 'error');
    assert.equal(typeof anBody?.error?.type, 'string');
    assert.equal(typeof anBody?.error?.message, 'string');
    assertNoInternals(an.error);
    // Envoy answered itself (local_reply_config shaped it): the extproc never saw that reply, its
    // stream just ended; the reason (the TLS failure) is in Envoy's own response code details.
    const id = oa.headers?.get('x-sluice-request-id');
    const line = await until(() => g.accessLog.find((l) => l['request_id'] === id));
    assert.equal(line['outcome'], 'aborted');
    assert.equal(oa.headers?.get('x-sluice-error-code'), 'upstream_unavailable');
  });

  it('sluice run --upstream-ca FILE: the CLI passes the CA through to the data plane', async () => {
    const port = await freePort();
    const cli = sluiceRun([
      '-f',
      g.dir,
      '--upstream-ca',
      join(pki, 'test-ca.crt'),
      '--port',
      String(port),
      '--admin',
      'off',
      '--no-watch',
    ]);
    try {
      // It prints where it listens once the data plane is up.
      const ready = await Promise.race([
        until(() => cli.stderr().includes('gateway on http://') || undefined, 30_000),
        cli.exited.then((code) => {
          throw new Error(`sluice run exited with ${code}: ${cli.stderr()}`);
        }),
      ]);
      assert.equal(ready, true);
      const url = /gateway on (http:\/\/\S+?) /.exec(cli.stderr())?.[1];
      assert.ok(url, cli.stderr());
      trusted.take();
      const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: KEYS.client, maxRetries: 0 });
      const r = await client.chat.completions.create({
        model: 'gpt-tls',
        messages: [{ role: 'user', content: 'via the cli' }],
      });
      assert.equal(r.choices[0]?.message.content, 'echo: via the cli');
      assert.equal(trusted.take()[0]?.servername, 'localhost');
    } finally {
      cli.stop();
    }
    assert.equal(await cli.exited, 0);
  });

  it('sluice run --upstream-ca with a file that is not a certificate: usage error, exit 2', async () => {
    const notPem = join(pki, 'not-a-cert.pem');
    await writeFile(notPem, 'hello\n');
    for (const file of [notPem, join(pki, 'missing.crt')]) {
      // In-process: a usage error returns before anything starts.
      let err = '';
      const write = mock.method(process.stderr, 'write', (chunk: string | Uint8Array) => {
        err += String(chunk);
        return true;
      });
      let code: number;
      try {
        code = await runMain(['-f', g.dir, '--upstream-ca', file, '--admin', 'off']);
      } finally {
        write.mock.restore();
      }
      assert.equal(code, 2);
      assert.match(
        err,
        /--upstream-ca must be a readable PEM file holding at least one certificate/,
      );
    }
  });

  it('a trusted certificate for another host name: 503, nothing reaches the backend', async () => {
    wrongHost.take();
    await assert.rejects(
      openai.chat.completions.create({
        model: 'gpt-wrong-host',
        messages: [{ role: 'user', content: 'x' }],
      }),
      (e: unknown) => e instanceof OpenAI.APIError && e.status === 503,
    );
    assert.deepEqual(wrongHost.take(), []);
  });
});
