import { mock } from 'node:test';

/** Runs a command's main, capturing what it writes to stdout and stderr. */
export async function captureMain(
  main: (argv: string[]) => Promise<number>,
  argv: string[],
): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const o = mock.method(process.stdout, 'write', (s: string) => ((out += s), true));
  const e = mock.method(process.stderr, 'write', (s: string) => ((err += s), true));
  try {
    return { code: await main(argv), out, err };
  } finally {
    o.mock.restore();
    e.mock.restore();
  }
}
