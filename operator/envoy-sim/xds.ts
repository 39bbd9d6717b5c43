// The emulator's ADS stream, held as Envoy holds it: CDS and LDS as wildcards, then EDS for the
// EDS clusters and RDS for the route configurations the listeners name. Each response is
// decoded with the targeted Envoy release's API, checked against the allowlist and compiled as a
// whole; any problem NACKs it with every reason and keeps the previous resources of that type.
import { OfficialAdsClient, type Received } from '../envoy-api/ads-client.js';
import { envoyRelease } from '../envoy-api/index.js';
import { validateEnvoy } from '../envoy-api/validate.js';
import { unsupported } from './allowlist.js';
import {
  compileCluster,
  compileListener,
  compileLocalities,
  compileRouteConfig,
  ConfigError,
  type ClusterModel,
  type ListenerModel,
  type LocalityModel,
  type RouteConfigModel,
} from './model.js';
import { decodeResource, envoyRoot } from './protos.js';

const T = 'type.googleapis.com/envoy.config.';
export const CLUSTER = `${T}cluster.v3.Cluster`;
export const ENDPOINT = `${T}endpoint.v3.ClusterLoadAssignment`;
export const LISTENER = `${T}listener.v3.Listener`;
export const ROUTE = `${T}route.v3.RouteConfiguration`;

/** What is applied right now. Replaced, never mutated, so a request can hold on to one. */
export interface XdsState {
  listeners: ReadonlyMap<string, ListenerModel>;
  routes: ReadonlyMap<string, RouteConfigModel>;
  clusters: ReadonlyMap<string, ClusterModel>;
  /** EDS service name → localities. */
  endpoints: ReadonlyMap<string, LocalityModel[]>;
}

export interface XdsEvent {
  typeUrl: string;
  version: string;
  accepted: boolean;
  /** The NACK message. */
  message?: string;
}

export class XdsClient {
  state: XdsState = {
    listeners: new Map(),
    routes: new Map(),
    clusters: new Map(),
    endpoints: new Map(),
  };
  readonly events: XdsEvent[] = [];
  private readonly client: OfficialAdsClient;
  private edsNames: string[] = [];
  private rdsNames: string[] = [];

  constructor(
    address: string,
    nodeId: string,
    private readonly onChange: (state: XdsState, event: XdsEvent) => void,
  ) {
    this.client = new OfficialAdsClient(address, {
      nodeId,
      keep: false,
      judge: (r) => this.apply(r),
    });
    this.client.subscribe(CLUSTER);
    this.client.subscribe(LISTENER);
  }

  close(): void {
    this.client.close();
  }

  /** Returns a NACK message, or undefined to ACK. */
  private apply(r: Received): string | undefined {
    let message: string | undefined;
    try {
      message = this.applyOrThrow(r);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      message = err.message;
    }
    const event: XdsEvent = { typeUrl: r.typeUrl, version: r.version, accepted: !message };
    if (message) event.message = message;
    this.events.push(event);
    if (!message) queueMicrotask(() => this.afterAck(r.typeUrl));
    this.onChange(this.state, event);
    return message;
  }

  private applyOrThrow(r: Received): string | undefined {
    const decoded = new Map<string, Record<string, unknown>>();
    const errors: string[] = [];
    const invalid: string[] = [];
    for (const any of r.raw) {
      if (any.type_url !== r.typeUrl) {
        errors.push(`a ${any.type_url} in a ${r.typeUrl} response`);
        continue;
      }
      const { type, json } = decodeResource(any);
      const name = (json['name'] ?? json['cluster_name'] ?? '') as string;
      const at = `${type.name}[${JSON.stringify(name)}]`;
      // Envoy's own load-time check first: a violation is a NACK from any Envoy of the release.
      const violations = validateEnvoy(envoyRoot(), type.fullName.slice(1), any.value);
      invalid.push(...violations.map((v) => `${at}${v.slice(1)}`));
      errors.push(...unsupported(type, json, at));
      decoded.set(name, json);
    }
    if (invalid.length > 0) {
      return `Envoy ${envoyRelease()} refuses this config (proto constraint validation failed): ${invalid.join('; ')}`;
    }
    if (errors.length > 0) return `envoy-sim cannot run this config: ${errors.join('; ')}`;
    const s = this.state;
    switch (r.typeUrl) {
      case CLUSTER: {
        const clusters = new Map<string, ClusterModel>();
        for (const [n, j] of decoded) clusters.set(n, compileCluster(j));
        this.state = { ...s, clusters };
        return undefined;
      }
      case ENDPOINT: {
        const endpoints = new Map(s.endpoints);
        for (const [n, j] of decoded) endpoints.set(n, compileLocalities(j, n));
        this.state = { ...s, endpoints };
        return undefined;
      }
      case LISTENER: {
        const listeners = new Map<string, ListenerModel>();
        for (const [n, j] of decoded) listeners.set(n, compileListener(j));
        this.state = { ...s, listeners };
        return undefined;
      }
      case ROUTE: {
        const routes = new Map(s.routes);
        for (const [n, j] of decoded) routes.set(n, compileRouteConfig(j));
        this.state = { ...s, routes };
        return undefined;
      }
      default:
        return `envoy-sim does not implement resource type ${r.typeUrl}`;
    }
  }

  /** Follows the accepted CDS and LDS with EDS and RDS subscriptions for what they name. */
  private afterAck(typeUrl: string): void {
    if (typeUrl === CLUSTER) {
      const names = [...this.state.clusters.values()]
        .map((c) => c.edsServiceName)
        .filter((n): n is string => n !== undefined)
        .sort();
      if (names.join('\0') !== this.edsNames.join('\0') && names.length > 0) {
        this.edsNames = names;
        this.client.subscribe(ENDPOINT, names);
      }
    } else if (typeUrl === LISTENER) {
      const names = [...new Set([...this.state.listeners.values()].map((l) => l.routeConfigName))];
      names.sort();
      if (names.join('\0') !== this.rdsNames.join('\0') && names.length > 0) {
        this.rdsNames = names;
        this.client.subscribe(ROUTE, names);
      }
    }
  }
}
