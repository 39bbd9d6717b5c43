/**
 * The ext_proc server, on each HTTP/2 transport (test/interop/transports.ts), against grpc-go's
 * client: the bench's Go program
 * (test/bench/loadgen, `interop` mode, built once into the bench cache) runs its checks —
 * health Check/Watch, an exchange with bodies over several DATA frames, an error status in
 * trailers and trailers-only, a deadline, a cancel, the message size limit, an unknown method,
 * GOAWAY on shutdown — and this test checks each one passed and what the server's handler saw.
 * Skipped where Go is not installed.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { it } from 'node:test';
import pino from 'pino';
import { buildLoadgen } from '../../test/bench/loadgen/build.js';
import { TRANSPORTS, withTransport } from '../../test/interop/transports.js';
import type { DuplexCall } from '../stream.js';
import { Status, type CallMetadata } from './h2-call.js';
import { startH2Server } from './h2-server.js';

const EXT_PROC = 'envoy.service.ext_proc.v3.ExternalProcessor';

/** The behaviours interop.go asks for with x-interop. */
function interopHandler(call: DuplexCall, md: CallMetadata, seen: string[]): void {
  const mode = md.get('x-interop')[0];
  const end = (call as unknown as { end(code?: number, message?: string): void }).end.bind(call);
  call.on('cancelled', () => seen.push(`cancelled:${String(mode ?? '')}`));
  call.on('data', (m) => {
    if (mode === 'never-answer') return;
    if (mode === 'fail-now') return end(Status.INTERNAL, 'bad — really');
    call.write({ [m.request!]: {} });
    if (mode === 'fail') end(Status.INTERNAL, 'bad — really');
  });
  call.on('end', () => call.end());
}

const build = buildLoadgen();

for (const transport of TRANSPORTS) {
  it(
    `grpc-go client (${transport}): health, exchange, trailers, deadline, cancel, size limit, unknown method, GOAWAY`,
    { skip: 'skipped' in build ? build.skipped : false, timeout: 120_000 },
    async () => {
      if ('skipped' in build) return;
      const dir = mkdtempSync(join(tmpdir(), 'sluice-h2-go-'));
      const seen: string[] = [];
      const server = await startH2Server(
        withTransport(
          {
            listen: `unix:${join(dir, 'h2.sock')}`,
            maxMessageBytes: 64 * 1024,
            logger: pino({ level: 'silent' }),
            onStream: (call, md) => interopHandler(call, md, seen),
          },
          transport,
        ),
        { '': 'SERVING', [EXT_PROC]: 'SERVING' },
      );
      try {
        const child = spawn(build.path, ['interop', server.address], {
          stdio: ['pipe', 'pipe', 'pipe'],
        });
        let stderr = '';
        child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
        const checks = new Map<string, { ok: boolean; detail?: string }>();
        let stopped: Promise<void> | undefined;
        for await (const line of createInterface({ input: child.stdout })) {
          if (line === 'goaway-ready') {
            stopped = server.shutdown(5000);
            await new Promise((r) => setTimeout(r, 100));
            child.stdin.end('go\n');
            continue;
          }
          const c = JSON.parse(line) as { check: string; ok: boolean; detail?: string };
          checks.set(c.check, c);
        }
        const code = await new Promise<number | null>((resolve) => {
          if (child.exitCode !== null) resolve(child.exitCode);
          else child.once('exit', resolve);
        });
        assert.equal(code, 0, stderr);
        await stopped;
        const expected = [
          'health_check',
          'health_watch',
          'process_exchange',
          'status_fail',
          'status_fail-now',
          'deadline',
          'cancel',
          'max_message_size',
          'unknown_method',
          'goaway',
        ];
        for (const name of expected) {
          const c = checks.get(name);
          assert.ok(c, `${name}: not run (${stderr})`);
          assert.ok(c.ok, `${name}: ${c.detail ?? ''}`);
        }
        // The handler heard about the deadline and the cancel (client side ended both).
        assert.equal(seen.filter((s) => s === 'cancelled:never-answer').length, 2);
      } finally {
        await server.shutdown(100);
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
}
