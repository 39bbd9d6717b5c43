/**
 * The extproc's config over the operator's ADS stream, the way an Envoy node receives its own:
 * it subscribes to sluice.extproc.v1.ExtprocConfig under its own node id, compiles each document
 * exactly as a file is compiled, ACKs what it applied and NACKs what it refused (with the reason,
 * which the operator turns into status), and keeps the last good config either way.
 */
// Types only: grpc-js and the protos are loaded when a source connects (shared/proto.ts), so
// importing this module costs an extproc that reads a file nothing (issue 16).
import type * as grpc from '@grpc/grpc-js';
import type protobuf from 'protobufjs';
import type { Logger } from 'pino';
import { backoffDelay, type Backoff } from '../shared/backoff.js';
import { adsService, grpcJs, protoType } from '../shared/proto.js';
import { compileConfig, ConfigError, type ConfigSourceEvents } from './load.js';
import type { RuntimeConfig } from './runtime.js';

/** The extproc's reconnect pace by default: quicker than the operator's reflectors'. */
const XDS_BACKOFF: Backoff = { initialMs: 250, maxMs: 10_000 };

export const EXTPROC_CONFIG_TYPE = 'type.googleapis.com/sluice.extproc.v1.ExtprocConfig';

export interface XdsSourceOptions {
  /** The operator's ADS address: `unix:/path` or `host:port`. */
  address: string;
  /** This extproc's node id, e.g. `<pod>/extproc`: how the operator tells data planes apart. */
  nodeId: string;
  logger: Logger;
  /** How long start() waits for a first good config (default 30 s). */
  startTimeoutMs?: number;
  /** Reconnect backoff after a stream ends: doubles from `initialMs` up to `maxMs`, jittered. */
  backoff?: Backoff;
  /** Largest response accepted (default 64 MiB; the document carries every route). */
  maxMessageBytes?: number;
}

interface RawResponse {
  version_info?: string;
  resources?: { type_url: string; value: Buffer }[];
  type_url?: string;
  nonce?: string;
}

type AdsCall = grpc.ClientDuplexStream<Record<string, unknown>, RawResponse>;

let configType: protobuf.Type | undefined;

function extprocConfigType(): protobuf.Type {
  configType ??= protoType('sluice/extproc/v1/config.proto', 'sluice.extproc.v1.ExtprocConfig');
  return configType;
}

/** Same events as FileConfigSource: onConfig for each new good config, onRejected otherwise. */
export class XdsConfigSource {
  private client: grpc.Client | undefined;
  private call: AdsCall | undefined;
  private closed = false;
  private acceptedVersion = '';
  private lastJson: string | undefined;
  private lastReason: string | undefined;
  private failures = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private work: Promise<void> = Promise.resolve();
  private first: ((cfg: RuntimeConfig) => void) | undefined;

  constructor(
    private readonly opts: XdsSourceOptions,
    private readonly events: ConfigSourceEvents,
  ) {}

  /** Connects and resolves with the first good config; rejects (and closes) on timeout. */
  start(): Promise<RuntimeConfig> {
    const timeoutMs = this.opts.startTimeoutMs ?? 30_000;
    return new Promise<RuntimeConfig>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.first = undefined;
        this.close();
        reject(
          new ConfigError(
            `no valid config from ${this.opts.address} within ${timeoutMs} ms` +
              (this.lastReason ? `; last refused: ${this.lastReason}` : ''),
          ),
        );
      }, timeoutMs);
      this.first = (cfg) => {
        clearTimeout(timer);
        this.first = undefined;
        resolve(cfg);
      };
      this.connect();
    });
  }

  close(): void {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.call?.cancel();
    this.call = undefined;
    this.client?.close();
  }

  private connect(): void {
    if (this.closed) return;
    if (!this.client) {
      const Ctor = adsService();
      this.client = new Ctor(this.opts.address, grpcJs().credentials.createInsecure(), {
        'grpc.max_receive_message_length': this.opts.maxMessageBytes ?? 64 * 1024 * 1024,
        // A vanished operator (node lost, no FIN) must be noticed, or the stream waits forever.
        'grpc.keepalive_time_ms': 30_000,
        'grpc.keepalive_timeout_ms': 10_000,
        'grpc.initial_reconnect_backoff_ms': (this.opts.backoff ?? XDS_BACKOFF).initialMs,
        'grpc.max_reconnect_backoff_ms': (this.opts.backoff ?? XDS_BACKOFF).maxMs,
      });
    }
    const method = (this.client as unknown as Record<string, () => AdsCall>)[
      'StreamAggregatedResources'
    ]!;
    const call = method.call(this.client);
    this.call = call;
    call.on('data', (r: RawResponse) => {
      this.work = this.work.then(() => this.handle(call, r));
    });
    call.on('error', () => undefined);
    call.on('status', (s: grpc.StatusObject) => {
      if (this.call === call) this.retry(s);
    });
    call.write({
      node: { id: this.opts.nodeId, user_agent_name: 'sluice-extproc' },
      type_url: EXTPROC_CONFIG_TYPE,
      resource_names: [],
      // On a reconnect: what this extproc runs, so the operator's status is right from the start.
      version_info: this.acceptedVersion,
    });
  }

  private retry(status: grpc.StatusObject): void {
    this.call = undefined;
    if (this.closed) return;
    const delay = backoffDelay(this.opts.backoff ?? XDS_BACKOFF, this.failures);
    this.failures++;
    this.opts.logger.warn(
      {
        event: 'xds_reconnect',
        address: this.opts.address,
        code: status.code,
        details: status.details,
        in_ms: delay,
      },
      'config stream ended; reconnecting',
    );
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  private async handle(call: AdsCall, r: RawResponse): Promise<void> {
    if (this.call !== call || this.closed) return;
    this.failures = 0;
    const version = r.version_info ?? '';
    const nonce = r.nonce ?? '';
    let cfg: RuntimeConfig | undefined;
    let text: string;
    try {
      text = this.document(r);
      if (text === this.lastJson) {
        this.ack(call, version, nonce);
        return;
      }
      cfg = await compileConfig(text, { baseDir: '/nonexistent', env: {}, valuesOnly: true });
    } catch (err) {
      const reason =
        err instanceof ConfigError ? err.message : 'unexpected failure while loading the config';
      this.lastReason = reason;
      this.opts.logger.error(
        { event: 'config_rejected', source: 'xds', version, reason },
        'config refused; keeping the last good one',
      );
      this.events.onRejected(reason);
      if (this.call === call) {
        call.write({
          type_url: EXTPROC_CONFIG_TYPE,
          version_info: this.acceptedVersion,
          response_nonce: nonce,
          resource_names: [],
          error_detail: { code: grpcJs().status.INVALID_ARGUMENT, message: reason },
        });
      }
      return;
    }
    this.lastJson = text;
    this.acceptedVersion = version;
    if (this.first) this.first(cfg);
    else void this.events.onConfig(cfg);
    if (this.call === call) this.ack(call, version, nonce);
  }

  private ack(call: AdsCall, version: string, nonce: string): void {
    this.acceptedVersion = version;
    call.write({
      type_url: EXTPROC_CONFIG_TYPE,
      version_info: version,
      response_nonce: nonce,
      resource_names: [],
    });
  }

  /** The one document in a response, as JSON text. */
  private document(r: RawResponse): string {
    if (r.type_url !== EXTPROC_CONFIG_TYPE) {
      throw new ConfigError(`unexpected resource type ${r.type_url ?? '(none)'}`);
    }
    const resources = r.resources ?? [];
    if (resources.length !== 1) {
      throw new ConfigError(`expected exactly one ExtprocConfig, got ${resources.length}`);
    }
    const any = resources[0]!;
    if (any.type_url !== EXTPROC_CONFIG_TYPE) {
      throw new ConfigError(`unexpected resource type ${any.type_url}`);
    }
    let json: unknown;
    try {
      const type = extprocConfigType();
      json = type.toObject(type.decode(any.value)).json;
    } catch {
      throw new ConfigError('ExtprocConfig resource does not decode');
    }
    if (typeof json !== 'string' || json === '') {
      throw new ConfigError('ExtprocConfig resource has no document');
    }
    return json;
  }
}
