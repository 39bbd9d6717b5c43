/**
 * `sluice mask [--policy FILE]`: the extproc's masking, offline. Reads JSON lines
 * `{"id": …, "text": "…"}` and writes `{"id": …, "text": "<masked>", "findings": [...]}` per line,
 * with offsets as JavaScript string indices into the input text. A bad line gets an error line
 * and the rest is still processed.
 */
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { formatIssues, MaskingPolicy, Policy } from '../../extproc/config/contract.js';
import { maskString } from '../../extproc/masking/engine.js';
import {
  compileMasking,
  defaultMasking,
  type CompiledMasking,
} from '../../extproc/masking/compiled.js';

const USAGE = `Usage: sluice mask [--policy FILE]

Reads JSON lines {"id": …, "text": "…"} on stdin and writes one line per input:
{"id": …, "text": "<masked>", "findings": [{"type": "EMAIL", "start": 10, "end": 27}]}
Offsets are JavaScript string indices into the input text. A line that cannot be read gets
{"id": …, "line": N, "error": "…"} and processing continues.

FILE (YAML or JSON) is a policy's masking section (detectors, customPatterns, wordLists,
actions, defaultAction, …) or a whole policy ({name, mode, masking}); in shadow mode texts are
left as they are. Default: every built-in detector, action mask.

Exit status: 0 when every line was processed, 1 when some line was bad, 2 on a usage or policy error.
`;

export interface Io {
  /** Input lines, without terminators. */
  lines: AsyncIterable<string>;
  out: (s: string) => void;
  err: (s: string) => void;
}

/**
 * Stdin's lines, read only once iterated: a readline interface made at once starts reading, and
 * lines that arrive while the policy file loads would go before its iterator exists — a short
 * piped input then ended with nothing written and the process stopped on an unsettled await.
 */
async function* stdinLines(): AsyncIterable<string> {
  yield* createInterface({ input: process.stdin, crlfDelay: Infinity });
}

function defaultIo(): Io {
  return {
    lines: stdinLines(),
    out: (s) => process.stdout.write(s),
    err: (s) => process.stderr.write(s),
  };
}

async function loadPolicy(path: string): Promise<{ masking: CompiledMasking; shadow: boolean }> {
  const doc: unknown = parseYaml(await readFile(path, 'utf8'));
  const whole = typeof doc === 'object' && doc !== null && 'masking' in doc;
  if (whole) {
    const p = Policy.safeParse(doc);
    if (!p.success) throw new Error(formatIssues(p.error));
    if (!p.data.masking) throw new Error('the policy has no masking section');
    return { masking: compileMasking(p.data.masking), shadow: p.data.mode === 'shadow' };
  }
  const m = MaskingPolicy.safeParse(doc ?? {});
  if (!m.success) throw new Error(formatIssues(m.error));
  return { masking: compileMasking(m.data), shadow: false };
}

type Id = string | number | null;

function idOf(v: unknown): Id | undefined {
  return typeof v === 'string' || typeof v === 'number' || v === null ? v : undefined;
}

export async function main(argv: string[], io: Io = defaultIo()): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args: argv,
      options: { policy: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    io.err(`sluice mask: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    io.out(USAGE);
    return 0;
  }
  let policy: { masking: CompiledMasking; shadow: boolean };
  try {
    policy =
      values.policy === undefined
        ? { masking: defaultMasking(), shadow: false }
        : await loadPolicy(values.policy);
  } catch (err) {
    io.err(`sluice mask: policy ${values.policy ?? ''}: ${(err as Error).message}\n`);
    return 2;
  }
  let n = 0;
  let bad = 0;
  for await (const line of io.lines) {
    n++;
    if (line.trim() === '') continue;
    let id: Id | undefined;
    try {
      let doc: unknown;
      try {
        doc = JSON.parse(line);
      } catch {
        // The parser's message can quote the line, i.e. the very text being protected.
        throw new Error('not valid JSON');
      }
      if (typeof doc !== 'object' || doc === null || Array.isArray(doc))
        throw new Error('not a JSON object');
      const rec = doc as Record<string, unknown>;
      id = idOf(rec.id);
      if (rec.id !== undefined && id === undefined)
        throw new Error('id must be a string or number');
      if (typeof rec.text !== 'string') throw new Error('text must be a string');
      const r = maskString(policy.masking, rec.text, policy.shadow);
      io.out(
        `${JSON.stringify({
          id: id ?? n,
          text: r.text,
          findings: r.findings.map((f) => ({ type: f.type, start: f.start, end: f.end })),
        })}\n`,
      );
    } catch (err) {
      bad++;
      io.out(`${JSON.stringify({ id: id ?? null, line: n, error: (err as Error).message })}\n`);
    }
  }
  return bad > 0 ? 1 : 0;
}
