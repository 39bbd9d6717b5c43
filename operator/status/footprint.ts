/**
 * What `Programmed` is judged on: per AIRoute/AIPolicy, the served resources that carry it. The
 * controller computes footprints from each snapshot (controller/snapshot.ts); status reads them
 * against what each data plane ACKed, so the types live here, below the controller.
 */

/** One served resource. */
export interface ResourceRef {
  typeUrl: string;
  name: string;
}

/**
 * Where an object lives in the served config: `envoy` resources are judged on Envoy nodes,
 * `extproc` resources on extproc nodes.
 */
export interface Footprint {
  envoy: ResourceRef[];
  extproc: ResourceRef[];
  /** Set when the object is served but changes nothing (a policy on no served route): why. */
  idle?: string;
}
