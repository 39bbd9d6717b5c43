/**
 * h2spec (github.com/summerwind/h2spec, an HTTP/2 conformance tester) built once per version of
 * test/interop/h2spec-go/go.mod and go.sum into the bench's cache (~/.cache/sluice/bench, or
 * SLUICE_BENCH_CACHE; test/bench/loadgen/build.ts), and run against a server with its results read
 * per case from its JUnit report.
 *
 * Why a module of our own and not `go install ...@version`: h2spec has no go.mod (dep's Gopkg.lock;
 * the module proxy serves it as v2.2.1+incompatible, its newest), so `go install` would take the
 * newest of every dependency on each fresh machine; here go.sum pins them (go 1.24+ `tool` line).
 *
 * Usage as a script: `npx tsx test/interop/h2spec.ts` prints the binary's path;
 * `npx tsx test/interop/h2spec.ts 127.0.0.1:8080` runs every case against that server and prints
 * one line per case that did not pass.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { cacheDir, goEnv } from '../bench/loadgen/build.js';

const MODULE_DIR = fileURLToPath(new URL('./h2spec-go/', import.meta.url));
const PACKAGE = 'github.com/summerwind/h2spec/cmd/h2spec';
const PREFIX = 'h2spec-';

export type H2specBuild = { path: string; built: boolean } | { skipped: string };

/** go.mod and go.sum (the pinned versions) and the toolchain: a change to any rebuilds. */
function buildKey(goVersion: string): string {
  const h = createHash('sha256').update(`${goVersion}\0${process.platform}/${process.arch}\0`);
  for (const f of ['go.mod', 'go.sum']) h.update(readFileSync(join(MODULE_DIR, f))).update('\0');
  return h.digest('hex').slice(0, 16);
}

export function buildH2spec(log: (line: string) => void = () => undefined): H2specBuild {
  const ver = spawnSync('go', ['env', 'GOVERSION'], { encoding: 'utf8', env: goEnv() });
  if (ver.error || ver.status !== 0) return { skipped: 'go not found' };
  const dir = cacheDir();
  const name = `${PREFIX}${buildKey(ver.stdout.trim())}`;
  const path = join(dir, name);
  if (existsSync(path)) return { path, built: false };

  mkdirSync(dir, { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  log(`building h2spec (${ver.stdout.trim()}) into ${dir}`);
  // nice: on 2 cores a first-time build with module downloads should not starve other work.
  const b = spawnSync('nice', ['-n', '10', 'go', 'build', '-trimpath', '-o', tmp, PACKAGE], {
    cwd: MODULE_DIR,
    encoding: 'utf8',
    env: goEnv(),
  });
  if (b.error || b.status !== 0) {
    rmSync(tmp, { force: true });
    const why = (b.error?.message ?? b.stderr).trim().split('\n').slice(-5).join(' | ');
    return { skipped: `h2spec build failed: ${why}` };
  }
  renameSync(tmp, path);
  // One current binary is enough (~9 MB each).
  for (const f of readdirSync(dir)) {
    if (f.startsWith(PREFIX) && f !== name && !f.includes('.tmp-'))
      rmSync(join(dir, f), { force: true });
  }
  return { path, built: true };
}

/** One h2spec case: `id` is what h2spec takes as a section argument (`http2/5.1.2/1`). */
export interface H2specCase {
  id: string;
  /** The group's id (`http2/5.1.2`), as the JUnit report names it. */
  group: string;
  desc: string;
}

// The order h2spec runs (and prints) its three specs in (h2spec.go Run).
const ROOTS = ['generic', 'http2', 'hpack'];

/**
 * Every case, strict ones included, from `--dryrun --strict` (titles only, no server): the
 * JUnit report names a case by group and description only, and h2spec selects cases by number.
 */
export function listCases(bin: string): H2specCase[] {
  const r = spawnSync(bin, ['--dryrun', '--strict'], { encoding: 'utf8' });
  if (r.error || r.status !== 0)
    throw new Error(`h2spec --dryrun: ${r.error?.message ?? r.stderr}`);
  const cases: H2specCase[] = [];
  let root = -1;
  let group = '';
  for (const line of r.stdout.split('\n')) {
    if (line.trim() === '') continue;
    let m: RegExpExecArray | null;
    if (!line.startsWith(' ')) group = ROOTS[++root] ?? `unknown-${root}`;
    else if ((m = /^\s+(\d+(?:\.\d+)*)\. /.exec(line))) group = `${ROOTS[root]}/${m[1]}`;
    else if ((m = /^\s+(\d+): (.*)$/.exec(line)))
      cases.push({ id: `${group}/${m[1]}`, group, desc: m[2]! });
  }
  if (root !== ROOTS.length - 1 || cases.length < 100)
    throw new Error(
      `h2spec --dryrun: unexpected listing (${root + 1} specs, ${cases.length} cases)`,
    );
  return cases;
}

export type CaseOutcome =
  | { result: 'passed' }
  | { result: 'skipped' }
  | { result: 'failed'; detail: string }
  /** Excluded from the run (see RunOptions.exclude). */
  | { result: 'not-run' };

export interface RunOptions {
  host: string;
  port: number;
  /**
   * Case ids not to run at all: the ones that cannot finish against this server (h2spec's 5.1.2
   * opens as many streams as SETTINGS_MAX_CONCURRENT_STREAMS allows, plus one).
   */
  exclude?: readonly string[];
  /** h2spec's -o: seconds it waits for each expected frame (its default is 2). */
  timeoutSeconds?: number;
  /** The whole run's limit; h2spec is killed past it. */
  killAfterMs?: number;
}

export interface RunResult {
  outcomes: Map<string, CaseOutcome>;
  /** h2spec's own output (text report), for a failing assertion's message. */
  output: string;
  ms: number;
}

const unescapeXml = (s: string): string =>
  s.replace(/&(#\d+|#x[0-9a-f]+|lt|gt|amp|quot|apos);/gi, (_, e: string) => {
    if (e[0] === '#')
      return String.fromCodePoint(
        e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : Number(e.slice(1)),
      );
    return { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" }[e.toLowerCase()]!;
  });

/** Runs h2spec (strict cases included) and gives each listed case its outcome. */
export async function runH2spec(
  bin: string,
  cases: readonly H2specCase[],
  opts: RunOptions,
): Promise<RunResult> {
  const exclude = new Set(opts.exclude ?? []);
  for (const id of exclude)
    if (!cases.some((c) => c.id === id)) throw new Error(`exclude: no h2spec case ${id}`);
  const dir = mkdtempSync(join(tmpdir(), 'sluice-h2spec-'));
  const report = join(dir, 'junit.xml');
  const started = performance.now();
  try {
    const args = [
      '-h',
      opts.host,
      '-p',
      String(opts.port),
      '--strict',
      '-o',
      String(opts.timeoutSeconds ?? 2),
      '-j',
      report,
      // Without section arguments h2spec runs everything; with them, only those cases.
      ...(exclude.size > 0 ? cases.filter((c) => !exclude.has(c.id)).map((c) => c.id) : []),
    ];
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (output += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (output += d));
    const kill = setTimeout(() => child.kill('SIGKILL'), opts.killAfterMs ?? 120_000);
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    clearTimeout(kill);
    const ms = performance.now() - started;
    // Exit 1 means some case failed; no report means h2spec itself gave up (it exits when it
    // cannot connect, e.g. the server died).
    if (!existsSync(report))
      throw new Error(`h2spec wrote no report (exit ${String(code)}):\n${output.slice(-2000)}`);
    const xml = readFileSync(report, 'utf8');
    const byName = new Map<string, CaseOutcome>();
    const tc =
      /<testcase package="([^"]*)" classname="([^"]*)" time="[^"]*">([\s\S]*?)<\/testcase>/g;
    for (const m of xml.matchAll(tc)) {
      const inner = m[3]!;
      const bad = /<(failure|error)>([\s\S]*?)<\/\1>/.exec(inner);
      const outcome: CaseOutcome = bad
        ? { result: 'failed', detail: unescapeXml(bad[2]!).trim() }
        : /<skipped>/.test(inner)
          ? { result: 'skipped' }
          : { result: 'passed' };
      byName.set(`${unescapeXml(m[1]!)}\0${unescapeXml(m[2]!)}`, outcome);
    }
    const outcomes = new Map<string, CaseOutcome>();
    for (const c of cases) {
      if (exclude.has(c.id)) {
        outcomes.set(c.id, { result: 'not-run' });
        continue;
      }
      const o = byName.get(`${c.group}\0${c.desc}`);
      if (!o) throw new Error(`h2spec's report has no result for ${c.id} (${c.desc})`);
      outcomes.set(c.id, o);
    }
    return { outcomes, output, ms };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const b = buildH2spec((line) => process.stderr.write(`${line}\n`));
  const target = process.argv[2];
  if ('skipped' in b) {
    process.stderr.write(`skipped: ${b.skipped}\n`);
    process.exitCode = 1;
  } else if (target === undefined) {
    process.stdout.write(`${b.path}\n`);
  } else {
    const at = target.lastIndexOf(':');
    const cases = listCases(b.path);
    const r = await runH2spec(b.path, cases, {
      host: target.slice(0, at),
      port: Number(target.slice(at + 1)),
      exclude: process.argv.slice(3),
    });
    for (const [id, o] of r.outcomes)
      if (o.result !== 'passed')
        process.stdout.write(
          `${id} ${o.result}${'detail' in o ? `: ${o.detail.replace(/\s+/g, ' ')}` : ''}\n`,
        );
    process.stdout.write(`${r.outcomes.size} cases in ${(r.ms / 1000).toFixed(1)} s\n`);
  }
}
