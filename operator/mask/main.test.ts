import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { main } from './main.js';

async function* from(lines: string[]): AsyncIterable<string> {
  for (const l of lines) yield await Promise.resolve(l);
}

async function mask(args: string[], lines: string[]) {
  let out = '';
  let err = '';
  const code = await main(args, {
    lines: from(lines),
    out: (s) => (out += s),
    err: (s) => (err += s),
  });
  const rows = out
    .trim()
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { code, rows, err };
}

describe('sluice mask', () => {
  it('masks with every built-in by default, with offsets into the input', async () => {
    const text = 'Contact: jane.doe@example.com or 4111 1111 1111 1111, and jane.doe@example.com';
    const r = await mask([], [JSON.stringify({ id: 'a', text })]);
    assert.equal(r.code, 0);
    assert.deepEqual(r.rows, [
      {
        id: 'a',
        text: 'Contact: [EMAIL_1] or [CREDIT_CARD_1], and [EMAIL_1]',
        findings: [
          { type: 'EMAIL', start: 9, end: 29 },
          { type: 'CREDIT_CARD', start: 33, end: 52 },
          { type: 'EMAIL', start: 58, end: 78 },
        ],
      },
    ]);
    const f = (r.rows[0]!.findings as { start: number; end: number }[])[0]!;
    assert.equal(text.slice(f.start, f.end), 'jane.doe@example.com');
  });

  it('writes an error line for a bad line, without echoing it, and goes on', async () => {
    const r = await mask(
      [],
      [
        '{"id": 1, "text": "secret jane@example.com',
        '',
        '{"id": 2}',
        '[1]',
        '{"id": {"x":1}, "text": "a"}',
        '{"text": "no id, 🌍 then bob@example.org"}',
      ],
    );
    assert.equal(r.code, 1);
    assert.deepEqual(r.rows.slice(0, 4), [
      { id: null, line: 1, error: 'not valid JSON' },
      { id: 2, line: 3, error: 'text must be a string' },
      { id: null, line: 4, error: 'not a JSON object' },
      { id: null, line: 5, error: 'id must be a string or number' },
    ]);
    assert.deepEqual(r.rows[4], {
      id: 6,
      text: 'no id, 🌍 then [EMAIL_1]',
      findings: [{ type: 'EMAIL', start: 15, end: 30 }],
    });
    assert.ok(!JSON.stringify(r.rows).includes('jane@'));
  });

  it('applies a policy file: actions, custom patterns, shadow mode; refuses a bad one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sluice-mask-'));
    try {
      const file = join(dir, 'p.yaml');
      await writeFile(
        file,
        [
          'detectors: [EMAIL, CREDIT_CARD]',
          'customPatterns: [{ type: ORDER_ID, pattern: "ORD-[0-9]{6}" }]',
          'actions: { CREDIT_CARD: partial, ORDER_ID: redact }',
        ].join('\n'),
      );
      const r = await mask(
        ['--policy', file],
        [
          JSON.stringify({
            id: 'x',
            text: 'ORD-123456, card 4111-1111-1111-1111, tel +1 415 555 0132',
          }),
        ],
      );
      assert.equal(r.code, 0, r.err);
      assert.equal(r.rows[0]!.text, '[ORDER_ID], card ****-****-****-1111, tel +1 415 555 0132');

      await writeFile(file, 'name: p\nmode: shadow\nmasking: {}\n');
      const s = await mask(
        ['--policy', file],
        [JSON.stringify({ id: 1, text: 'a@b.example.com' })],
      );
      assert.equal(s.rows[0]!.text, 'a@b.example.com');
      assert.equal((s.rows[0]!.findings as unknown[]).length, 1);

      await writeFile(file, 'customPatterns: [{ type: BAD, pattern: "(a)\\\\1" }]\n');
      const bad = await mask(['--policy', file], []);
      assert.equal(bad.code, 2);
      assert.match(bad.err, /backreference/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('reads piped stdin whole when a policy file loads first (the real process)', async () => {
    // Lines that arrived while the policy loaded were lost, and the process stopped (exit 13).
    const dir = await mkdtemp(join(tmpdir(), 'sluice-mask-'));
    try {
      const policy = join(dir, 'p.yaml');
      await writeFile(policy, 'detectors: [EMAIL, PERSON]\n');
      const cli = fileURLToPath(new URL('../cli.ts', import.meta.url));
      const r = spawnSync(process.execPath, ['--import', 'tsx', cli, 'mask', '--policy', policy], {
        input: '{"id":1,"text":"Dr. Ada Lovelace: ada@example.com"}\n',
        encoding: 'utf8',
        timeout: 60_000,
      });
      assert.equal(r.status, 0, r.stderr);
      const row = JSON.parse(r.stdout) as { text: string };
      assert.equal(row.text, 'Dr. [PERSON_1]: [EMAIL_1]');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
