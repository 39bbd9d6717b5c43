/** The resource types the operator serves over ADS, and the order in which it sends them. */

export const TYPE_PREFIX = 'type.googleapis.com/';

export const CLUSTER = `${TYPE_PREFIX}envoy.config.cluster.v3.Cluster`;
export const ENDPOINT = `${TYPE_PREFIX}envoy.config.endpoint.v3.ClusterLoadAssignment`;
export const LISTENER = `${TYPE_PREFIX}envoy.config.listener.v3.Listener`;
export const ROUTE = `${TYPE_PREFIX}envoy.config.route.v3.RouteConfiguration`;
/** Sluice's own resource: the compiled extproc config (proto/sluice/extproc/v1/config.proto). */
export const EXTPROC_CONFIG = `${TYPE_PREFIX}sluice.extproc.v1.ExtprocConfig`;

/**
 * Make-before-break: a route must never point at a cluster Envoy does not know yet, and a
 * cluster must have endpoints before a listener sends traffic to it, so clusters go first, then
 * their endpoints, then listeners, then the routes they name. Types not listed go last.
 */
export const SEND_ORDER: readonly string[] = [CLUSTER, ENDPOINT, LISTENER, ROUTE, EXTPROC_CONFIG];

/**
 * In State of the World, LDS and CDS responses are the full set (an absent name is a deletion);
 * RDS and EDS carry only what the client named. The extproc config is one wildcard document.
 */
export function isWildcardType(typeUrl: string): boolean {
  return typeUrl === CLUSTER || typeUrl === LISTENER || typeUrl === EXTPROC_CONFIG;
}

export function sendRank(typeUrl: string): number {
  const i = SEND_ORDER.indexOf(typeUrl);
  return i === -1 ? SEND_ORDER.length : i;
}

/** How each known type names its resources, for snapshots given as lists. */
export function nameField(typeUrl: string): string {
  return typeUrl === ENDPOINT ? 'cluster_name' : 'name';
}
