/**
 * The context window check's cost (issue 18, item 3): counting a conversation message by message
 * and trimming it, next to estimating the same text in one piece in the same run (its floor:
 * the check tokenizes each text once, so it should cost about what the estimate does).
 *
 * Columns (CPU time of this process, median of 3):
 *   conversation   the request: N turns of about S bytes per message, OpenAI chat or Anthropic
 *   KiB            its body size
 *   estimate ms    estimateRequestInputTokens on the whole body (the budget's estimate)
 *   fits ms        fitContext with a window it fits in (count only)
 *   trim ms        fitContext with trim-oldest and a window a quarter of the conversation
 *   × estimate     trim over estimate: the per-message work on top of tokenizing
 *   µs/msg         trim per message
 *
 *   npx tsx test/bench/context.ts      (`npm run bench` includes it; BENCH_ONLY=context alone)
 */
import { fileURLToPath } from 'node:url';
import { fitContext } from '../../extproc/context/window.js';
import type { Operation } from '../../extproc/providers/endpoints.js';
import {
  estimateRequestInputTokens,
  forgetPromptCounts,
  warmTokenizer,
} from '../../extproc/usage/estimate.js';
import { pinSelf } from './proc.js';
import { fmtInt, fmtMs, median, table } from './stats.js';

const RUNS = 3;

function cpuMs(since: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(since);
  return (d.user + d.system) / 1000;
}

const WORDS = 'the model reads every message of the conversation before it answers again'.split(
  ' ',
);

function text(bytes: number, seed: number): string {
  const out: string[] = [];
  let n = 0;
  for (let i = seed; n < bytes; i++) {
    const w = `${WORDS[i % WORDS.length]!}${i % 7 === 0 ? `${i}` : ''}`;
    out.push(w);
    n += w.length + 1;
  }
  return out.join(' ');
}

interface Case {
  name: string;
  op: Operation;
  body: Record<string, unknown>;
  messages: number;
}

function conversation(op: 'chat' | 'messages', turns: number, bytes: number): Case {
  const messages: Record<string, unknown>[] = [];
  for (let i = 0; i < turns; i++) {
    messages.push({ role: 'user', content: text(bytes, i * 3) });
    if (op === 'chat' && i % 4 === 1) {
      messages.push({
        role: 'assistant',
        content: null,
        tool_calls: [{ id: `c${i}`, type: 'function', function: { name: 'f', arguments: '{}' } }],
      });
      messages.push({ role: 'tool', tool_call_id: `c${i}`, content: text(bytes, i) });
    }
    messages.push({ role: 'assistant', content: text(bytes, i * 5) });
  }
  messages.push({ role: 'user', content: 'and now?' });
  const body: Record<string, unknown> =
    op === 'chat'
      ? { model: 'm', messages: [{ role: 'system', content: 'be brief' }, ...messages] }
      : { model: 'm', system: 'be brief', messages, max_tokens: 1024 };
  return {
    name: `${op === 'chat' ? 'openai' : 'anthropic'} ${turns} turns × ${bytes} B`,
    op,
    body,
    messages: (body.messages as unknown[]).length,
  };
}

export function runContextBench(): string[][] {
  warmTokenizer();
  const cases = [
    conversation('chat', 20, 2000),
    conversation('chat', 200, 2000),
    conversation('messages', 200, 2000),
    // Many tiny messages: the per-message work, not the tokenizer, dominates.
    conversation('chat', 5000, 20),
  ];
  const rows: string[][] = [];
  for (const c of cases) {
    const kib = Buffer.byteLength(JSON.stringify(c.body)) / 1024;
    const est: number[] = [];
    const fits: number[] = [];
    const trim: number[] = [];
    let total = 0;
    let dropped = 0;
    for (let r = 0; r < RUNS; r++) {
      // Each figure is for a conversation never seen: the estimate keeps recent texts' counts.
      forgetPromptCounts();
      let t0 = process.cpuUsage();
      total = estimateRequestInputTokens(c.op, c.body);
      est.push(cpuMs(t0));
      const base = {
        operation: c.op,
        body: c.body,
        outputLimit: 1024,
        reserveOutputTokens: 1024,
      };
      forgetPromptCounts();
      t0 = process.cpuUsage();
      fitContext({ ...base, window: { contextTokens: total * 2 }, overflow: 'reject' });
      fits.push(cpuMs(t0));
      forgetPromptCounts();
      t0 = process.cpuUsage();
      const out = fitContext({
        ...base,
        window: { contextTokens: Math.ceil(total / 4) + 2048 },
        overflow: 'trim-oldest',
      });
      trim.push(cpuMs(t0));
      if (out.kind === 'trimmed') dropped = out.dropped;
    }
    const e = median(est);
    const t = median(trim);
    rows.push([
      c.name,
      fmtInt(kib),
      fmtInt(total),
      fmtMs(e),
      fmtMs(median(fits)),
      fmtMs(t),
      (t / e).toFixed(2),
      ((t * 1000) / c.messages).toFixed(2),
      fmtInt(dropped),
    ]);
  }
  return rows;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const pinned = pinSelf(0);
  const rows = runContextBench();
  process.stdout.write(
    `${table(
      [
        'conversation',
        'KiB',
        'tokens',
        'estimate ms',
        'fits ms',
        'trim ms',
        '× estimate',
        'µs/msg',
        'dropped',
      ],
      rows,
      'lrrrrrrrr',
    )}\n`,
  );
  process.stdout.write(
    `(CPU ms, median of ${RUNS}${pinned ? '; pinned to core 0' : ''}; trim to a quarter of the conversation plus 2,048 tokens)\n`,
  );
}
