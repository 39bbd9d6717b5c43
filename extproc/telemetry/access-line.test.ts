import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino, type Logger } from 'pino';
import { infoLineWriter } from './access-line.js';

function capture(opts: pino.LoggerOptions = {}): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const logger = pino(
    { base: { component: 'extproc', worker: 2 }, ...opts },
    { write: (l: string) => void lines.push(l) },
  ).child({ log: 'access' });
  return { logger, lines };
}

const records: object[] = [
  {
    event: 'request',
    request_id: 'abc',
    api: 'openai',
    route: 'a "quoted" \\ route\n',
    request_model: 'modèle-路由-🚀',
    backend: undefined,
    status: 200,
    cost_usd: Number.NaN,
    stream: false,
    tokens: { input: 1, output: 2, estimated: false, nested: { x: [1, 'two', null] } },
    verdicts: [],
    duration_ms: 1.25,
  },
  {},
  { only: undefined },
  { fn: () => 1, n: Number.POSITIVE_INFINITY, date: new Date(0) },
];

test("the access line is byte for byte what pino's own info() writes", () => {
  for (const record of records) {
    const ours = capture();
    const theirs = capture();
    // One clock for both: pino writes the time it reads.
    const now = Date.now;
    Date.now = () => 1_700_000_000_000;
    try {
      infoLineWriter(ours.logger)(record, 'request');
      theirs.logger.info(record, 'request');
    } finally {
      Date.now = now;
    }
    assert.equal(ours.lines.length, 1);
    assert.equal(ours.lines[0], theirs.lines[0]);
  }
});

test('nothing is written below the level, as with info()', () => {
  const { logger, lines } = capture({ level: 'warn' });
  infoLineWriter(logger)({ a: 1 }, 'request');
  assert.deepEqual(lines, []);
  logger.level = 'info';
  infoLineWriter(logger)({ a: 1 }, 'request');
  assert.equal(lines.length, 1);
});

test('a logger with formatters, redaction or a mixin goes through info()', () => {
  for (const opts of [
    { formatters: { log: (o: object) => ({ ...o, formatted: true }) } },
    { redact: ['secret'] },
    { mixin: () => ({ mixed: true }) },
    { msgPrefix: '[x] ' },
  ] as pino.LoggerOptions[]) {
    const ours = capture(opts);
    const theirs = capture(opts);
    const now = Date.now;
    Date.now = () => 1_700_000_000_000;
    try {
      infoLineWriter(ours.logger)({ secret: 's', a: 1 }, 'request');
      theirs.logger.info({ secret: 's', a: 1 }, 'request');
    } finally {
      Date.now = now;
    }
    assert.equal(ours.lines[0], theirs.lines[0]);
  }
});

test('a record with a cycle is still logged (through info())', () => {
  const { logger, lines } = capture();
  const r: Record<string, unknown> = { a: 1 };
  r.self = r;
  infoLineWriter(logger)(r, 'request');
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /"a":1/);
});

test('through a destination that takes the line in parts, the same bytes', () => {
  for (const record of records) {
    const parts: string[] = [];
    const ours = pino({ base: { component: 'extproc', worker: 2 } }, {
      write: () => assert.fail('the whole line was written instead of its parts'),
      writeParts: (a: string, b: string, c: string) => void parts.push(`${a}${b}${c}`),
    } as unknown as pino.DestinationStream).child({ log: 'access' });
    const theirs = capture();
    const now = Date.now;
    Date.now = () => 1_700_000_000_000;
    try {
      infoLineWriter(ours)(record, 'request');
      theirs.logger.info(record, 'request');
    } finally {
      Date.now = now;
    }
    assert.deepEqual(parts, theirs.lines);
  }
});

test('through a destination that takes the line as bytes, the same bytes', () => {
  for (const record of records) {
    const lines: string[] = [];
    const ours = pino({ base: { component: 'extproc', worker: 2 } }, {
      write: (l: string) => void lines.push(l),
      writeParts: (a: string, b: string, c: string) => void lines.push(`${a}${b}${c}`),
      writeLine: (line: Buffer) => void lines.push(line.toString('utf8')),
    } as unknown as pino.DestinationStream).child({ log: 'access' });
    const theirs = capture();
    const now = Date.now;
    Date.now = () => 1_700_000_000_000;
    try {
      infoLineWriter(ours)(record, 'request');
      theirs.logger.info(record, 'request');
    } finally {
      Date.now = now;
    }
    assert.deepEqual(lines, theirs.lines);
  }
  // A cycle cannot be written so: it goes through info(), as with any destination.
  const lines: string[] = [];
  const ours = pino({}, {
    write: (l: string) => void lines.push(l),
    writeParts: () => assert.fail('parts of a cycle'),
    writeLine: () => assert.fail('bytes of a cycle'),
  } as unknown as pino.DestinationStream);
  const r: Record<string, unknown> = { a: 1 };
  r.self = r;
  infoLineWriter(ours)(r, 'request');
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /"a":1/);
});
