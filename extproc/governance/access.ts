/**
 * Which caller may use which model on which route. Deny beats allow: every matching deny rule
 * is considered before any allow, so rule order only decides which deny is named.
 */
import { compileGlobs, type Matcher } from './glob.js';
import { refusal, type Refusal } from './refusal.js';
import type { AccessPolicy, AccessRule } from './schema.js';
import type { Caller } from './identity.js';

interface CompiledRule {
  name: string;
  effect: AccessRule['effect'];
  /** Lists neither consumers nor teams: concerns every caller, anonymous ones too. */
  everyone: boolean;
  consumer: Matcher;
  team: Matcher;
  hasConsumers: boolean;
  hasTeams: boolean;
  model: Matcher;
  route: Matcher;
}

export interface CompiledAccess {
  defaultEffect: AccessPolicy['default'];
  deny: CompiledRule[];
  allow: CompiledRule[];
}

export function compileAccess(policy: AccessPolicy): CompiledAccess {
  const rules = policy.rules.map((r): CompiledRule => ({
    name: r.name,
    effect: r.effect,
    everyone: r.consumers === undefined && r.teams === undefined,
    consumer: compileGlobs(r.consumers ?? []),
    team: compileGlobs(r.teams ?? []),
    hasConsumers: r.consumers !== undefined,
    hasTeams: r.teams !== undefined,
    model: compileGlobs(r.models),
    route: compileGlobs(r.routes),
  }));
  return {
    defaultEffect: policy.default,
    deny: rules.filter((r) => r.effect === 'deny'),
    allow: rules.filter((r) => r.effect === 'allow'),
  };
}

function concerns(r: CompiledRule, caller: Caller | undefined, model: string, route: string) {
  if (!r.model(model) || !r.route(route)) return false;
  if (r.everyone) return true;
  if (!caller) return false;
  if (r.hasConsumers && r.consumer(caller.consumer)) return true;
  return r.hasTeams && caller.team !== undefined && r.team(caller.team);
}

export type AccessResult = { ok: true; rule: string | undefined } | { ok: false; refusal: Refusal };

export function checkAccess(
  access: CompiledAccess | undefined,
  caller: Caller | undefined,
  request: { model: string; route: string },
): AccessResult {
  if (!access) return { ok: true, rule: undefined };
  const { model, route } = request;
  for (const r of access.deny) {
    if (concerns(r, caller, model, route)) return denied(r.name, model);
  }
  for (const r of access.allow) {
    if (concerns(r, caller, model, route)) return { ok: true, rule: r.name };
  }
  return access.defaultEffect === 'allow'
    ? { ok: true, rule: undefined }
    : denied('default', model);
}

// The message names the rule and the caller's own model only: nothing about who else may use it.
function denied(rule: string, model: string): AccessResult {
  const shown = model.length > 200 ? `${model.slice(0, 200)}…` : model;
  return {
    ok: false,
    refusal: refusal(
      'access_denied',
      `Access to model "${shown}" is denied by policy rule "${rule}".`,
      { rule },
    ),
  };
}
