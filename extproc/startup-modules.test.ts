// Issue 16: an extproc loads the packages of a feature only when its configuration selects it.
// Started as the bench runs it (memory state store, no tracing, no cloud backend that signs,
// the node:http2 transport, a config file), it must not have loaded ioredis, OpenTelemetry, the
// AWS SDK, jose, grpc-js or protobufjs by the time it is ready, nor to answer a request it refuses
// (an immediate response, which wire/encode.ts writes without protobufjs: loading it then would
// stall that request ~30 ms): their code, source strings and closures are live heap every full
// collection marks. Every module the process resolves is recorded by a loader hook (ESM imports)
// and, at exit, from require's cache (CommonJS).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { benchConfig } from '../test/bench/config.js';
import { compileConfig, type ConfigSourceEvents } from './config/load.js';
import { eventStreamCodec } from './providers/bedrock-converse.js';
import { backendPackagesLoaded } from './providers/packages.js';
import { run } from './run.js';
import { referenceService } from './wire/proto.js';
import { fromWire } from './workers/config-wire.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

/** Packages (and their own dependencies) that only some configurations need. */
const OPTIONAL = [
  'ioredis',
  '@ioredis/',
  'cluster-key-slot',
  'redis-errors',
  '@opentelemetry/',
  '@aws-sdk/',
  '@smithy/',
  'jose',
  '@grpc/grpc-js',
  '@grpc/proto-loader',
  'grpc-health-check',
  'protobufjs',
  '@protobufjs/',
];

// The hooks thread appends every resolved URL to the file; the process appends require's cache
// when it exits.
const HOOKS = `
import { appendFileSync } from 'node:fs';
let out;
export function initialize(data) { out = data.out; }
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  appendFileSync(out, r.url + '\\n');
  return r;
}`;
const PRELOAD = `
import { createRequire, register } from 'node:module';
import { appendFileSync } from 'node:fs';
const out = process.env.SLUICE_TEST_MODULES_OUT;
register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(HOOKS)}), { data: { out } });
const cache = createRequire(process.cwd() + '/').cache;
process.on('exit', () => appendFileSync(out, Object.keys(cache).join('\\n') + '\\n'));`;

const dir = mkdtempSync(join(tmpdir(), 'sluice-startup-modules-'));
const children: ReturnType<typeof spawn>[] = [];
after(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

/** The package a loaded file belongs to (`@scope/name/` or `name/`), or undefined outside one. */
function packageOf(file: string): string | undefined {
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(file);
  return m ? `${m[1]}/` : undefined;
}

/** `sluice extproc` on `config`, recording the modules it loads in `out`. */
function extprocProcess(config: string, out: string, name: string) {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      '--import',
      `data:text/javascript,${encodeURIComponent(PRELOAD)}`,
      'operator/cli.ts',
      'extproc',
      '--config',
      config,
      '--listen',
      `unix:${join(dir, `${name}.sock`)}`,
      '--admin',
      '127.0.0.1:0',
      '--no-watch',
    ],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      // Nothing from this shell switches a feature on (SLUICE_REDIS_URL, OTEL_*).
      env: {
        ...Object.fromEntries(
          Object.entries(process.env).filter(([k]) => !/^(SLUICE_|OTEL_|AWS_|GCE_)/.test(k)),
        ),
        SLUICE_TEST_MODULES_OUT: out,
      },
    },
  );
  children.push(child);
  return child;
}

/** The bench config with a Bedrock backend added, as version `version`. */
function withBedrock(version: string): Record<string, unknown> {
  const doc = parseYaml(benchConfig()) as { version: string; backends: object[] };
  doc.version = version;
  doc.backends.push({
    name: 'bedrock',
    cluster: 'sluice/backend/bedrock',
    provider: 'aws-bedrock',
    credential: { value: '[default]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = x' },
    aws: { region: 'us-east-1' },
  });
  return doc;
}

type Answer = { response?: string; immediate_response?: { status?: { code?: string } } };

/**
 * Sends the request headers of a POST to a path the gateway does not serve, as Envoy would, and
 * returns the answer: a refusal (404, an immediate response). This test process loads grpc-js and
 * protobufjs for it; the extproc under test is another process.
 */
async function refusedRequest(socket: string): Promise<Answer> {
  const Client = grpc.makeGenericClientConstructor(referenceService(), 'ExternalProcessor');
  const client = new Client(`unix:${socket}`, grpc.credentials.createInsecure());
  try {
    const call = (
      client as unknown as { Process(): grpc.ClientDuplexStream<object, Answer> }
    ).Process();
    const answer = once(call, 'data') as Promise<[Answer]>;
    call.on('error', () => {});
    call.write({
      request_headers: {
        headers: {
          headers: [
            { key: ':method', raw_value: Buffer.from('POST') },
            { key: ':path', raw_value: Buffer.from('/v1/not-served') },
            { key: ':authority', raw_value: Buffer.from('gw') },
            { key: 'content-type', raw_value: Buffer.from('application/json') },
          ],
        },
        end_of_stream: false,
      },
    });
    const [got] = await answer;
    call.end();
    return got;
  } finally {
    client.close();
  }
}

async function until(what: string, ok: () => boolean, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    assert.ok(Date.now() < deadline, `${what} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

it('loads no optional package when the config selects none of their features, nor to refuse a request', async () => {
  const config = join(dir, 'extproc.yaml');
  writeFileSync(config, benchConfig());
  const out = join(dir, 'modules.txt');
  writeFileSync(out, '');
  const child = extprocProcess(config, out, 'extproc');
  let log = '';
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (d: string) => (log += d));
  child.stderr.on('data', (d: string) => (log += d));
  const exited = once(child, 'exit');
  const deadline = Date.now() + 60_000;
  // The admin server is the last thing run() starts: the extproc is ready.
  while (!/"event":"admin_listening"/.test(log)) {
    assert.equal(child.exitCode, null, `extproc exited early: ${log}`);
    assert.ok(Date.now() < deadline, `extproc not ready within 60 s; got: ${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.match(log, /"event":"state_store","kind":"memory"/);
  // The first immediate response of the process (the default transport, node:http2).
  const refused = await refusedRequest(join(dir, 'extproc.sock'));
  assert.equal(refused.response, 'immediate_response', JSON.stringify(refused));
  assert.equal(refused.immediate_response?.status?.code, 'NotFound');
  child.kill('SIGTERM');
  await exited;

  const files = readFileSync(out, 'utf8').split('\n').filter(Boolean);
  // The hook saw the process's own modules: the record is not empty by mistake.
  assert.ok(
    files.some((f) => f.includes('/extproc/run.')),
    'no module of the extproc recorded',
  );
  assert.ok(
    files.some((f) => packageOf(f) === 'pino/'),
    'no package recorded',
  );
  const loaded = new Set<string>();
  for (const f of files) {
    const pkg = packageOf(f);
    if (!pkg || !OPTIONAL.some((o) => pkg.startsWith(o.endsWith('/') ? o : `${o}/`))) continue;
    // prom-client's default metrics require the OpenTelemetry API's CommonJS build (exemplars);
    // OpenTelemetry's own ESM builds, which tracing imports, must still be absent.
    if (pkg === '@opentelemetry/api/' && f.endsWith('.cjs')) continue;
    loaded.add(pkg);
  }
  assert.deepEqual(
    [...loaded].sort(),
    [],
    'packages loaded (at start or to answer a refused request) though no feature needs them',
  );
});

it('applies a pushed config that newly names a Bedrock backend once the AWS packages are loaded', async () => {
  // This process has not loaded them: the bench config compiles without them.
  const first = await compileConfig(benchConfig(), { baseDir: dir, env: {} });
  assert.equal(backendPackagesLoaded(['aws-bedrock']), false);
  let events: ConfigSourceEvents | undefined;
  const extproc = await run({
    // As a cluster worker gets its configs: compiled by its primary, so not loaded here yet.
    configSource: (e) => {
      events = e;
      return { start: () => Promise.resolve(first), reload: () => Promise.resolve(), close() {} };
    },
    listen: `unix:${join(dir, 'pushed.sock')}`,
    maxMessageBytes: 1 << 20,
    watchConfig: false,
    shutdownGraceMs: 0,
    logger: pino({ level: 'silent' }),
    registry: new Registry(),
    now: () => performance.now(),
    env: {},
    warmTokenizer: false,
  });
  try {
    const pushed = fromWire({ config: withBedrock('with-bedrock'), credentials: [] });
    const applied = events!.onConfig(pushed);
    // Not before its packages are in: a request would find a backend it cannot sign for.
    assert.equal(extproc.config().version, first.version);
    // What a worker waits for before it reports the version serving (workers/worker.ts).
    assert.ok(applied instanceof Promise, 'applying later, the extproc must say when it did');
    assert.equal(await applied, true);
    assert.equal(extproc.config().version, 'with-bedrock');
    assert.ok(backendPackagesLoaded(['aws-bedrock']));
    assert.doesNotThrow(() => eventStreamCodec());
  } finally {
    await extproc.close();
  }
});

it('loads the AWS packages when a reloaded config file newly names a Bedrock backend', async () => {
  const config = join(dir, 'reload.yaml');
  writeFileSync(config, benchConfig());
  const out = join(dir, 'reload-modules.txt');
  writeFileSync(out, '');
  const child = extprocProcess(config, out, 'reload');
  let log = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d: string) => (log += d));
  const exited = once(child, 'exit');
  await until('extproc ready', () => /"event":"admin_listening"/.test(log));
  writeFileSync(config, stringifyYaml(withBedrock('with-bedrock')));
  child.kill('SIGHUP');
  await until('the reloaded config applied', () =>
    /"event":"config_applied","version":"with-bedrock"/.test(log),
  );
  child.kill('SIGTERM');
  await exited;
  const files = readFileSync(out, 'utf8').split('\n');
  for (const pkg of ['@smithy/signature-v4/', '@aws-sdk/credential-provider-http/']) {
    assert.ok(
      files.some((f) => packageOf(f) === pkg),
      `${pkg} not loaded for the Bedrock backend`,
    );
  }
});
