import type { ApiFormat } from '../providers/endpoints.js';
import type { ModelEntry } from '../config/runtime.js';

/** `/v1/models` answered by the gateway from its routes, in the caller's API format. */
export function modelList(api: ApiFormat, models: readonly ModelEntry[]): unknown {
  if (api === 'anthropic') {
    const data = models.map(anthropicModel);
    return {
      data,
      has_more: false,
      first_id: data[0]?.id ?? null,
      last_id: data.at(-1)?.id ?? null,
    };
  }
  return { object: 'list', data: models.map(openaiModel) };
}

export function modelObject(api: ApiFormat, m: ModelEntry): unknown {
  return api === 'anthropic' ? anthropicModel(m) : openaiModel(m);
}

function openaiModel(m: ModelEntry) {
  return { id: m.id, object: 'model', created: m.created, owned_by: m.ownedBy };
}

function anthropicModel(m: ModelEntry) {
  return {
    type: 'model',
    id: m.id,
    display_name: m.id,
    created_at: new Date(m.created * 1000).toISOString(),
  };
}
