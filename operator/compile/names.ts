/**
 * Every name the translation invents, in one place: Envoy and the extproc meet on these strings,
 * so they must be derived the same way by both emitters and must not change between versions
 * without reason (a renamed cluster drains its connections).
 */
import { WIRE } from '../../extproc/config/contract.js';

export const LISTENER_NAME = 'sluice';
export const ROUTE_CONFIG_NAME = 'sluice';
export const VIRTUAL_HOST_NAME = 'sluice';
export const DEFAULT_EXTPROC_CLUSTER = 'sluice-extproc';

// The names Envoy and the extproc meet on come from the contract, never spelled twice.
export const ROUTER_FILTER = WIRE.routerFilter;
export const UPSTREAM_FILTER = WIRE.upstreamFilter;
export const MODEL_HEADER = WIRE.modelHeader;
export const METADATA_NAMESPACE = WIRE.backendMetadataNamespace;
export const BACKEND_METADATA_KEY = WIRE.backendMetadataKey;
export const BACKEND_ATTRIBUTE = WIRE.backendAttribute;
export const JWT_PAYLOAD_HEADER = WIRE.jwtPayloadHeader;

export function routeKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

export function backendId(namespace: string, route: string, backend: string): string {
  return `${namespace}/${route}/${backend}`;
}

export function ruleCluster(namespace: string, route: string, rule: number): string {
  return `route/${namespace}/${route}/rule/${rule}`;
}

/**
 * A backend alone, for requests pinned to it (WIRE.backendHeader): a stored response its provider
 * keeps is reached where it was created, never at another backend of the same rule.
 */
export function backendCluster(id: string): string {
  return `backend/${id}`;
}

/** One cluster per distinct JWKS host and port, shared by every issuer served from it. */
export function jwksCluster(host: string, port: number): string {
  return `jwks/${host}:${port}`;
}
