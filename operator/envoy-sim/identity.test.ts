// Identity Envoy makes unforgeable, end to end: the operator's Envoy resources with JWT issuers
// (one inline JWKS, one fetched over TLS through the JWKS cluster) and mesh identity, served over
// ADS to the emulator, in front of a real extproc and a mock provider, called with the official
// SDKs. The AIPolicy → IR.governance compilation is not under test here, so the IR is given its
// governance, and the extproc config its policy, exactly where the compilation will put them.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { generateKeyPairSync, sign } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttps, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, before, describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { stringify } from 'yaml';
import { WIRE, type ExtprocConfigInput } from '../../extproc/config/contract.js';
import { run as runExtproc, type RunningExtproc } from '../../extproc/run.js';
import { desiredState } from '../controller/snapshot.js';
import { loadResources } from '../source/yaml.js';
import { ENVOY_NODE_ID, EXTPROC_NODE_ID } from '../standalone/run.js';
import { compile, type CompileOptions } from '../compile/index.js';
import type { IRGovernance } from '../compile/ir.js';
import { toEnvoy, type EnvoyJson } from '../compile/to-envoy.js';
import { ALL_NODES, SnapshotCache } from '../xds/cache.js';
import { ResourceEncoder } from '../xds/encode.js';
import { startAdsServer, type RunningAdsServer } from '../xds/server.js';
import { startMockProvider, type MockProvider } from '../mock-provider/provider.js';
import { startEnvoySim, type EnvoySim } from './index.js';

const UPSTREAM = { openai: 'sk-upstream-id', anthropic: 'sk-ant-upstream-id' };
const ISSUER = { inline: 'https://inline.example', remote: 'https://idp.localhost' };
const SPIFFE = 'spiffe://cluster.local/ns/apps/sa/svc';
const APP = 'spiffe://cluster.local/ns/a/sa/app';
// What a sidecar forwards for a caller that sent its own element first: only the last is the
// sidecar's.
const SIDECAR_XFCC = `By=spiffe://gw;URI=spiffe://cluster.local/ns/evil/sa/x,By=spiffe://gw;URI=${APP}`;
const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');

const inlineKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const remoteKey = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwks = (key: typeof inlineKey, kid: string): string =>
  JSON.stringify({ keys: [{ ...key.publicKey.export({ format: 'jwk' }), kid }] });

function jwt(which: 'inline' | 'remote', claims: Record<string, unknown>): string {
  const now = Math.floor(Date.now() / 1000);
  const alg = which === 'inline' ? 'ES256' : 'RS256';
  const head = `${b64({ alg, kid: which })}.${b64({ iss: ISSUER[which], aud: 'sluice', exp: now + 600, ...claims })}`;
  const sig =
    which === 'inline'
      ? sign('sha256', Buffer.from(head), { key: inlineKey.privateKey, dsaEncoding: 'ieee-p1363' })
      : sign('sha256', Buffer.from(head), remoteKey.privateKey);
  return `${head}.${sig.toString('base64url')}`;
}

// A test CA and a certificate for localhost, from the openssl CLI (Node makes keys, not
// certificates). Our own config, so the leaf does not inherit a system default of CA:TRUE.
const OPENSSL_CNF = `[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost
`;

function openssl(args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { cwd }, (err, _out, stderr) =>
      err ? reject(new Error(`openssl ${args[0]} failed (is it on PATH?): ${stderr}`)) : resolve(),
    );
  });
}

async function localhostCertificate(dir: string): Promise<{ key: string; cert: string }> {
  await writeFile(join(dir, 'openssl.cnf'), OPENSSL_CNF);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1'];
  const common = ['req', '-x509', '-config', 'openssl.cnf', ...ec];
  await openssl(
    [...common, '-extensions', 'ca', '-subj', '/CN=test-ca', '-keyout', 'ca.key', '-out', 'ca.crt'],
    dir,
  );
  await openssl(
    [
      ...common,
      '-extensions',
      'leaf',
      '-subj',
      '/CN=localhost',
      '-keyout',
      'leaf.key',
      '-out',
      'leaf.crt',
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
    ],
    dir,
  );
  const [key, cert] = await Promise.all([
    readFile(join(dir, 'leaf.key'), 'utf8'),
    readFile(join(dir, 'leaf.crt'), 'utf8'),
  ]);
  return { key, cert };
}

function manifests(port: number): string {
  const endpoint = { service: { name: 'mock', port: 80 } };
  const route = (name: string, model: string, provider: string) => ({
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'AIRoute',
    metadata: { name, namespace: 'id' },
    spec: {
      models: [{ exact: model }],
      backends: [
        { name: provider, provider, endpoint, credential: { secretRef: { name: provider } } },
      ],
    },
  });
  const docs = [
    route('chat', 'gpt-test', 'openai'),
    route('claude', 'claude-test', 'anthropic'),
    ...(['openai', 'anthropic'] as const).map((n) => ({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: n, namespace: 'id' },
      stringData: { apiKey: UPSTREAM[n] },
    })),
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'mock', namespace: 'id' },
      spec: { ports: [{ name: 'http', port: 80, targetPort: port }] },
    },
    {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: {
        name: 'mock-1',
        namespace: 'id',
        labels: { 'kubernetes.io/service-name': 'mock' },
      },
      addressType: 'IPv4',
      ports: [{ name: 'http', port }],
      endpoints: [{ addresses: ['127.0.0.1'], conditions: { ready: true } }],
    },
  ];
  return docs.map((d) => stringify(d)).join('---\n');
}

/** The extproc side of the same governance: JWT claims and mesh identities to consumers. */
function withPolicy(cfg: ExtprocConfigInput): ExtprocConfigInput {
  return {
    ...cfg,
    consumers: [{ name: 'carol', team: 'apps' }, { name: 'svc' }, { name: 'app' }],
    policies: [
      {
        name: 'id',
        identity: {
          jwt: { header: WIRE.jwtPayloadHeader, consumers: { carol: 'carol' } },
          mesh: { consumers: { [SPIFFE]: 'svc', [APP]: 'app' } },
        },
      },
    ],
    routes: cfg.routes.map((r) => ({ ...r, governance: 'id' })),
  };
}

interface Gateway {
  url: string;
  close(): Promise<void>;
}

async function startGateway(
  dir: string,
  mockPort: number,
  governance: IRGovernance,
  options: CompileOptions,
  editListener: (l: EnvoyJson) => EnvoyJson = (l) => l,
): Promise<Gateway> {
  await writeFile(join(dir, 'routes.yaml'), manifests(mockPort), 'utf8');
  const { resources } = await loadResources([join(dir, 'routes.yaml')]);
  const extprocSocket = join(dir, `extproc-${performance.now()}.sock`);
  const opts = { ...options, listenerAddress: '127.0.0.1', listenerPort: 0, extprocSocket };
  const t = compile(resources, opts);
  const { version: _v, limits: _l, now: _n, ...envoyOptions } = opts;
  const envoy = toEnvoy({ ...t.ir, governance }, envoyOptions);
  envoy.listeners = envoy.listeners.map(editListener);
  const cache = new SnapshotCache();
  cache.setSnapshot(
    ALL_NODES,
    desiredState({ ...t, envoy, extproc: withPolicy(t.extproc) }, ResourceEncoder.fromProtoTree())
      .snapshot,
  );
  const ads: RunningAdsServer = await startAdsServer({ cache, listen: '127.0.0.1:0' });
  const extproc: RunningExtproc = await runExtproc({
    xds: { address: ads.address, nodeId: EXTPROC_NODE_ID, startTimeoutMs: 10_000 },
    listen: `unix:${extprocSocket}`,
    maxMessageBytes: 16 * 1024 * 1024,
    watchConfig: false,
    shutdownGraceMs: 1000,
    logger: pino({ level: 'silent' }),
    registry: new Registry(),
    now: () => performance.now(),
    env: {},
  });
  const sim: EnvoySim = await startEnvoySim({ adsAddress: ads.address, nodeId: ENVOY_NODE_ID });
  const refused = sim.xdsEvents.filter((e) => !e.accepted);
  assert.deepEqual(refused, [], 'the emulator ACKs everything the operator emitted');
  return {
    url: `http://${sim.listenerAddress()}`,
    async close() {
      await sim.close();
      await extproc.close();
      await ads.close(500);
    },
  };
}

describe('envoy-sim: JWT identity through jwt_authn and the extproc', () => {
  let dir: string;
  let mock: MockProvider;
  let jwksServer: Server;
  let jwksFetches = 0;
  let gw: Gateway;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-sim-identity-'));
    const tls = await localhostCertificate(dir);
    jwksServer = createHttps(tls, (req, res) => {
      jwksFetches++;
      if (req.url !== '/keys' || req.headers.host !== `localhost:${port()}`) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(jwks(remoteKey, 'remote'));
    });
    await new Promise<void>((r) => jwksServer.listen(0, '127.0.0.1', r));
    const port = (): number => (jwksServer.address() as AddressInfo).port;
    mock = await startMockProvider({
      name: 'id',
      models: ['gpt-test'],
      auth: { bearer: UPSTREAM.openai, anthropicKey: UPSTREAM.anthropic },
    });
    const governance: IRGovernance = {
      consumers: [],
      policies: [],
      meshIdentity: true,
      jwtProviders: [
        {
          name: 'id/inline',
          issuer: ISSUER.inline,
          audiences: ['sluice'],
          jwks: { kind: 'inline', json: jwks(inlineKey, 'inline') },
        },
        {
          name: 'id/remote',
          issuer: ISSUER.remote,
          audiences: [],
          jwks: {
            kind: 'remote',
            uri: `https://localhost:${port()}/keys`,
            host: 'localhost',
            port: port(),
            cacheDurationSeconds: 300,
          },
        },
      ],
    };
    gw = await startGateway(dir, mock.port, governance, { caFile: join(dir, 'ca.crt') });
  });

  after(async () => {
    await gw?.close();
    await mock?.close();
    await new Promise((r) => jwksServer?.close(r));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const openai = (apiKey: string) => new OpenAI({ baseURL: `${gw.url}/v1`, apiKey, maxRetries: 0 });
  const anthropic = (apiKey: string) => new Anthropic({ baseURL: gw.url, apiKey, maxRetries: 0 });
  const chat = (c: OpenAI) =>
    c.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] });

  it('a JWT verified with an inline JWKS identifies the caller; the token goes no further', async () => {
    mock.take();
    const token = jwt('inline', { sub: 'carol' });
    const r = await chat(openai(token));
    assert.ok(r.choices[0]);
    const [seen] = mock.take();
    const forwarded = JSON.stringify(seen?.headers);
    assert.ok(seen && !forwarded.includes(token.split('.')[1]!), 'the JWT reached the provider');
    assert.equal(seen.headers['authorization'], `Bearer ${UPSTREAM.openai}`);
    assert.equal(seen.headers[WIRE.jwtPayloadHeader], undefined);
  });

  it('a JWT verified with a JWKS fetched over TLS through the JWKS cluster, then cached', async () => {
    const before = jwksFetches;
    await chat(openai(jwt('remote', { sub: 'carol' })));
    await chat(openai(jwt('remote', { sub: 'carol' })));
    assert.equal(jwksFetches - before, 1);
  });

  it('a verified JWT naming no known consumer is refused by the extproc', async () => {
    await assert.rejects(
      chat(openai(jwt('inline', { sub: 'mallory' }))),
      OpenAI.AuthenticationError,
    );
  });

  it('expired, wrong-issuer, wrong-audience and forged tokens are 401s in the caller’s format', async () => {
    const bad = [
      jwt('inline', { sub: 'carol', exp: Math.floor(Date.now() / 1000) - 3600 }),
      jwt('inline', { sub: 'carol', iss: ISSUER.remote }),
      jwt('inline', { sub: 'carol', aud: 'someone-else' }),
      `${jwt('inline', { sub: 'carol' }).split('.')[0]}.${b64({ iss: ISSUER.inline, aud: 'sluice', sub: 'carol' })}.c2ln`,
    ];
    for (const token of bad) {
      await assert.rejects(chat(openai(token)), OpenAI.AuthenticationError);
    }
    await assert.rejects(
      anthropic('unused').messages.create(
        {
          model: 'claude-test',
          max_tokens: 8,
          messages: [{ role: 'user', content: 'hi' }],
        },
        { headers: { authorization: `Bearer ${bad[0]}` } },
      ),
      Anthropic.AuthenticationError,
    );
  });

  it('a payload header sent by the client never reaches the extproc', async () => {
    const forged = b64({ iss: ISSUER.inline, sub: 'carol' });
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', [WIRE.jwtPayloadHeader]: forged },
      body: JSON.stringify({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] }),
    });
    assert.equal(res.status, 401);
    const body = (await res.json()) as { error: { code: string } };
    assert.equal(body.error.code, 'unauthenticated');
  });

  it('an x-forwarded-client-cert sent over plaintext is removed, not trusted', async () => {
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-forwarded-client-cert': `URI=${SPIFFE}` },
      body: JSON.stringify({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] }),
    });
    assert.equal(res.status, 401);
  });

  it('a sidecar-style XFCC is removed as well: listener mode trusts no sidecar', async () => {
    const res = await meshRequest(gw.url, SIDECAR_XFCC);
    assert.equal(res.status, 401);
  });
});

function meshRequest(url: string, xfcc: string | undefined): Promise<Response> {
  return fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(xfcc !== undefined ? { 'x-forwarded-client-cert': xfcc } : {}),
    },
    body: JSON.stringify({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] }),
  });
}

describe('envoy-sim: mesh identity behind a sidecar (clientCertTrust sidecar)', () => {
  let dir: string;
  let mock: MockProvider;
  let gw: Gateway;
  const meshOnly: IRGovernance = {
    consumers: [],
    policies: [],
    jwtProviders: [],
    meshIdentity: true,
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-sim-sidecar-'));
    mock = await startMockProvider({
      name: 'id',
      models: ['gpt-test'],
      auth: { bearer: UPSTREAM.openai },
    });
    gw = await startGateway(dir, mock.port, meshOnly, { clientCertTrust: 'sidecar' });
  });

  after(async () => {
    await gw?.close();
    await mock?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('the last XFCC element, the sidecar’s, names the caller', async () => {
    mock.take();
    const res = await meshRequest(gw.url, SIDECAR_XFCC);
    assert.equal(res.status, 200);
    assert.equal(mock.take().length, 1);
  });

  it('the same URIs in the other order are refused: earlier elements are never trusted', async () => {
    const swapped = `By=spiffe://gw;URI=${APP},By=spiffe://gw;URI=spiffe://cluster.local/ns/evil/sa/x`;
    assert.equal((await meshRequest(gw.url, swapped)).status, 401);
    assert.equal((await meshRequest(gw.url, undefined)).status, 401);
  });

  it('APPEND_FORWARD would remove the sidecar’s XFCC on its plaintext hop (the control)', async () => {
    const appendForward = (l: EnvoyJson): EnvoyJson => {
      const copy = structuredClone(l) as any;
      copy.filter_chains[0].filters[0].typed_config.forward_client_cert_details = 'APPEND_FORWARD';
      return copy as EnvoyJson;
    };
    const other = await startGateway(
      dir,
      mock.port,
      meshOnly,
      { clientCertTrust: 'sidecar' },
      appendForward,
    );
    try {
      assert.equal((await meshRequest(other.url, SIDECAR_XFCC)).status, 401);
    } finally {
      await other.close();
    }
  });
});

describe('envoy-sim: header_mutation alone keeps the payload header unforgeable', () => {
  let dir: string;
  let mock: MockProvider;
  const readsPayload: IRGovernance = {
    consumers: [],
    policies: [{ name: 'id', identity: { jwt: { header: WIRE.jwtPayloadHeader } } }],
    jwtProviders: [],
    meshIdentity: false,
  };
  const forgedRequest = (url: string) =>
    fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        [WIRE.jwtPayloadHeader]: b64({ iss: ISSUER.inline, sub: 'carol' }),
      },
      body: JSON.stringify({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] }),
    });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-sim-mutation-'));
    mock = await startMockProvider({
      name: 'id',
      models: ['gpt-test'],
      auth: { bearer: UPSTREAM.openai },
    });
  });

  after(async () => {
    await mock?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('with the emitted header_mutation the forged payload is removed: 401', async () => {
    const gw = await startGateway(dir, mock.port, readsPayload, {});
    try {
      assert.equal((await forgedRequest(gw.url)).status, 401);
    } finally {
      await gw.close();
    }
  });

  it('without it, the same request would be taken for carol (the control)', async () => {
    const dropMutation = (l: EnvoyJson): EnvoyJson => {
      const copy = structuredClone(l) as any;
      const hcm = copy.filter_chains[0].filters[0].typed_config;
      hcm.http_filters = hcm.http_filters.filter(
        (f: EnvoyJson) => f['name'] !== 'envoy.filters.http.header_mutation',
      );
      return copy as EnvoyJson;
    };
    const gw = await startGateway(dir, mock.port, readsPayload, {}, dropMutation);
    try {
      assert.equal((await forgedRequest(gw.url)).status, 200);
    } finally {
      await gw.close();
    }
  });
});
