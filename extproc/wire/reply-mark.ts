/**
 * The dynamic metadata every immediate response of the extproc carries (namespace, key, value).
 * Defined at the wire layer, which writes it into each ImmediateResponse, and published to the
 * operator as WIRE.replyMetadata* by config/contract.ts: a change here is a contract change.
 */
export const REPLY_MARK = { namespace: 'sluice', key: 'reply', value: 'extproc' } as const;
