/**
 * Token estimation's cost per MiB on the worst inputs we know of (issue 11, item 2), next to
 * ordinary prompts measured in the same run. Estimation runs on every governed request before
 * the budget check, and on streams that end without usage, so its cost per byte of caller input
 * must stay bounded whatever the input. Figures, not assertions: unit tests prove the bound
 * structurally (extproc/usage/estimate.test.ts).
 *
 * Columns (CPU time of this process, so other load on the machine does not count):
 *   ms/MiB     estimateTokens on 1 MiB of the input (median of 3, a fresh random input each time)
 *   × prose    that cost over the ordinary-prose figure of the same run
 *   tok/KiB    the estimate's density
 *   package    gpt-tokenizer's own countTokens (what estimation ran before) on a
 *              BENCH_ESTIMATE_WHOLE_KIB sample (default 32; 0 skips), merge cache cleared,
 *              scaled to ms/MiB: its quadratic inputs show as a figure that grows with the sample
 *   +tokens    how much our count exceeds the package's on that sample (long pieces in parts)
 *
 *   npx tsx test/bench/estimate.ts      (`npm run bench` includes it; BENCH_ONLY=estimate alone)
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as O200k from 'gpt-tokenizer/encoding/o200k_base';
import { estimateTokens, MAX_PIECE_CHARS, warmTokenizer } from '../../extproc/usage/estimate.js';
import { chatRequestBody } from './payloads.js';
import { pinSelf } from './proc.js';
import { fmtInt, fmtMs, median, table } from './stats.js';

const MIB = 1024 * 1024;
const RUNS = 3;
const WHOLE_KIB = Number(process.env.BENCH_ESTIMATE_WHOLE_KIB ?? 32);
const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));

// The package's own encoder: the "before" column.
const tokenizer = createRequire(import.meta.url)(
  'gpt-tokenizer/encoding/o200k_base',
) as typeof O200k;
const AS_TEXT = { disallowedSpecial: new Set<string>() };

/** Deterministic, so runs compare. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 0x1_0000_0000;
  };
}

/** A string of about `bytes` UTF-8 bytes built from pieces `next()` returns. */
function fill(bytes: number, next: () => string): string {
  const parts: string[] = [];
  let n = 0;
  while (n < bytes) {
    const p = next();
    parts.push(p);
    n += Buffer.byteLength(p);
  }
  return parts.join('');
}

function pick(r: () => number, alphabet: string): () => string {
  const chars = [...alphabet];
  return () => chars[Math.floor(r() * chars.length)]!;
}

/** A random code point that is a letter, mark, number or symbol of any plane (no surrogates). */
function unicode(r: () => number): () => string {
  return () => {
    for (;;) {
      const cp = r() < 0.7 ? 0x80 + Math.floor(r() * 0xff80) : 0x10000 + Math.floor(r() * 0x30000);
      if (cp >= 0xd800 && cp <= 0xdfff) continue;
      const s = String.fromCodePoint(cp);
      if (/[\p{L}\p{M}\p{N}\p{S}\p{P}]/u.test(s)) return s;
    }
  };
}

/** This repository's own TypeScript sources: real code, with its indentation and punctuation. */
function sources(bytes: number): string {
  const out: string[] = [];
  let n = 0;
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir).sort()) {
      if (n >= bytes) return;
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name.endsWith('.ts')) {
        const s = readFileSync(p, 'utf8');
        out.push(s);
        n += Buffer.byteLength(s);
      }
    }
  };
  for (;;) {
    const before = n;
    walk(join(ROOT, 'extproc'));
    walk(join(ROOT, 'operator'));
    if (n >= bytes || n === before) break;
  }
  return out.join('\n');
}

interface Input {
  name: string;
  /** Text of about `bytes` UTF-8 bytes; `run` varies random inputs between runs. */
  make: (bytes: number, run: number) => string;
}

const INPUTS: Input[] = [
  {
    name: 'prose (chat request text)',
    make: (b) => {
      const body = JSON.parse(chatRequestBody(b).toString('utf8')) as {
        messages: { content: string }[];
      };
      return body.messages.map((m) => m.content).join('\n');
    },
  },
  { name: 'source code (this repo)', make: (b) => sources(b) },
  { name: 'one char repeated (a)', make: (b) => 'a'.repeat(b) },
  // The split's first alternative backtracks over an uppercase run before the second takes it.
  { name: 'uppercase repeated (A)', make: (b) => 'A'.repeat(b) },
  {
    name: 'random lowercase letters',
    make: (b, run) => fill(b, pick(rng(11 + run), 'abcdefghijklmnopqrstuvwxyz')),
  },
  { name: 'punctuation repeated ([)', make: (b) => '['.repeat(b) },
  {
    name: 'random punctuation',
    make: (b, run) => fill(b, pick(rng(21 + run), '[]{}()<>!?.,;:-_=+*/\\|#$%^&~`\'"@')),
  },
  { name: 'random unicode', make: (b, run) => fill(b, unicode(rng(31 + run))) },
  { name: 'random digits', make: (b, run) => fill(b, pick(rng(41 + run), '0123456789')) },
  { name: 'spaces', make: (b) => ' '.repeat(b) },
  {
    name: 'mixed whitespace',
    make: (b, run) => fill(b, pick(rng(51 + run), ' \t\n\r\u00a0\u3000')),
  },
  { name: 'newline + slash runs', make: (b, run) => '!' + fill(b - 1, pick(rng(61 + run), '\n/')) },
  {
    name: 'letters with combining marks',
    make: (b, run) => fill(b, () => pick(rng(71 + run), 'aeiou')() + '\u0301'),
  },
];

function cpuMs(since: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(since);
  return (d.user + d.system) / 1000;
}

export interface EstimateRow {
  input: string;
  msPerMiB: number;
  tokPerKiB: number;
  wholeMsPerMiB: number | undefined;
  extraTokensPct: number | undefined;
}

export function runEstimateBench(): EstimateRow[] {
  warmTokenizer();
  const rows: EstimateRow[] = [];
  for (const input of INPUTS) {
    const times: number[] = [];
    let tokens = 0;
    let bytes = 0;
    for (let run = 0; run < RUNS; run++) {
      const text = input.make(MIB, run);
      const t0 = process.cpuUsage();
      tokens = estimateTokens(text);
      const ms = cpuMs(t0);
      bytes = Buffer.byteLength(text);
      times.push((ms * MIB) / bytes);
    }
    const row: EstimateRow = {
      input: input.name,
      msPerMiB: median(times),
      tokPerKiB: (tokens * 1024) / bytes,
      wholeMsPerMiB: undefined,
      extraTokensPct: undefined,
    };
    if (WHOLE_KIB > 0) {
      const sample = input.make(WHOLE_KIB * 1024, 0);
      const sampleBytes = Buffer.byteLength(sample);
      tokenizer.clearMergeCache();
      const t0 = process.cpuUsage();
      const exact = tokenizer.countTokens(sample, AS_TEXT);
      row.wholeMsPerMiB = (cpuMs(t0) * MIB) / sampleBytes;
      const chunked = estimateTokens(sample);
      row.extraTokensPct = exact === 0 ? 0 : ((chunked - exact) * 100) / exact;
    }
    rows.push(row);
  }
  return rows;
}

export function estimateTable(rows: readonly EstimateRow[]): string {
  const floor = rows[0]!.msPerMiB;
  return table(
    [
      'input (1 MiB)',
      'ms/MiB',
      '× prose',
      'tok/KiB',
      `package, ${WHOLE_KIB} KiB: ms/MiB`,
      '+tokens',
    ],
    rows.map((r) => [
      r.input,
      fmtMs(r.msPerMiB),
      (r.msPerMiB / floor).toFixed(1),
      fmtInt(r.tokPerKiB),
      r.wholeMsPerMiB === undefined ? '-' : fmtMs(r.wholeMsPerMiB),
      r.extraTokensPct === undefined ? '-' : `${r.extraTokensPct.toFixed(1)}%`,
    ]),
    'lrrrrr',
  );
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const pinned = pinSelf(0);
  const rows = runEstimateBench();
  process.stdout.write(`${estimateTable(rows)}\n`);
  process.stdout.write(
    `(CPU ms; estimateTokens counts pieces over ${MAX_PIECE_CHARS} chars in parts; median of ${RUNS}${pinned ? '; pinned to core 0' : ''})\n`,
  );
}
