// Checks that the project's hand-written .proto declarations (proto/) are wire-compatible with
// the official Envoy API: every declared message, enum and service exists officially under the
// same full name, with the same field numbers, types, labels and oneofs. Leaving things out is
// allowed; getting anything that is declared wrong is not.
import { readdirSync, accessSync, constants } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import protobuf from 'protobufjs';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export const OUR_PROTO_DIR = path.join(REPO_ROOT, 'proto');

const OFFICIAL_DEPS = path.join(REPO_ROOT, 'node_modules', '@grpc', 'grpc-js-xds', 'deps');

// The same include roots grpc-js-xds itself compiles with.
export const OFFICIAL_INCLUDE_DIRS = ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map(
  (dir) => path.join(OFFICIAL_DEPS, dir),
);

/**
 * A declaration that is newer than the API shipped in @grpc/grpc-js-xds, so it cannot be
 * compared with it. Its shape is pinned by hand from the upstream Envoy API instead.
 */
export interface AheadEntry {
  /** Full name without the leading dot: a message, field, enum value or method. */
  readonly name: string;
  /** What {@link describe} prints for our declaration. */
  readonly shape: string;
}

type Declaration = protobuf.Type | protobuf.Enum | protobuf.Service;

/** Every .proto file under `dir`, as sorted paths relative to it with forward slashes. */
export function listProtoFiles(dir: string): string[] {
  const found: string[] = [];
  const walk = (rel: string): void => {
    for (const entry of readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const child = rel === '' ? entry.name : `${rel}/${entry.name}`;
      if (entry.isDirectory()) walk(child);
      else if (entry.isFile() && entry.name.endsWith('.proto')) found.push(child);
    }
  };
  walk('');
  return found.sort();
}

/** The first include dir holding `file`, or undefined. */
export function findInIncludeDirs(
  file: string,
  includeDirs: readonly string[],
): string | undefined {
  for (const dir of includeDirs) {
    const full = path.join(dir, file);
    try {
      accessSync(full, constants.R_OK);
      return full;
    } catch {
      continue;
    }
  }
  return undefined;
}

/**
 * Loads `files` the way protoc would with `-I` for each include dir. Google's well-known types
 * come from the copies bundled in protobufjs, so no include dir has to provide them.
 */
export function loadRoot(files: readonly string[], includeDirs: readonly string[]): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    if (path.isAbsolute(target)) return target;
    const found = findInIncludeDirs(target, includeDirs);
    if (found === undefined) {
      throw new Error(`${target} not found in ${includeDirs.join(', ')}`);
    }
    return found;
  };
  root.loadSync([...files], { keepCase: true });
  root.resolveAll();
  return root;
}

function stripDot(fullName: string): string {
  return fullName.startsWith('.') ? fullName.slice(1) : fullName;
}

function typeName(field: protobuf.FieldBase): string {
  return field.resolvedType ? stripDot(field.resolvedType.fullName) : field.type;
}

function label(field: protobuf.FieldBase): string {
  if (field instanceof protobuf.MapField) return `map<${field.keyType}, ${typeName(field)}>`;
  if (field.repeated) return `repeated ${typeName(field)}`;
  if (field.options?.['proto3_optional'] === true) return `optional ${typeName(field)}`;
  return typeName(field);
}

function oneofOf(field: protobuf.FieldBase): string | undefined {
  // proto3 `optional` is modelled as a synthetic oneof; it is reported through the label.
  const oneof = field.partOf;
  return oneof && !oneof.isProto3Optional ? oneof.name : undefined;
}

/** A one-line, comparable description of a declaration's wire shape. */
export function describe(
  obj: protobuf.FieldBase | protobuf.Method | protobuf.Type | protobuf.Enum | protobuf.Service,
): string {
  if (obj instanceof protobuf.Field || obj instanceof protobuf.MapField) {
    const oneof = oneofOf(obj);
    return `${label(obj)} = ${obj.id}${oneof === undefined ? '' : ` in oneof ${oneof}`}`;
  }
  if (obj instanceof protobuf.Method) {
    const req = obj.resolvedRequestType
      ? stripDot(obj.resolvedRequestType.fullName)
      : obj.requestType;
    const res = obj.resolvedResponseType
      ? stripDot(obj.resolvedResponseType.fullName)
      : obj.responseType;
    const stream = (on: boolean | undefined): string => (on === true ? 'stream ' : '');
    return `rpc (${stream(obj.requestStream)}${req}) returns (${stream(obj.responseStream)}${res})`;
  }
  if (obj instanceof protobuf.Type) return 'message';
  if (obj instanceof protobuf.Enum) return 'enum';
  return 'service';
}

function relativeFile(filename: string | null, includeDirs: readonly string[]): string | undefined {
  if (filename === null) return undefined;
  for (const dir of includeDirs) {
    const rel = path.relative(dir, filename);
    if (!rel.startsWith('..') && !path.isAbsolute(rel)) return rel.split(path.sep).join('/');
  }
  return filename;
}

function* declarations(ns: protobuf.NamespaceBase): Generator<Declaration> {
  for (const nested of ns.nestedArray) {
    if (
      nested instanceof protobuf.Type ||
      nested instanceof protobuf.Enum ||
      nested instanceof protobuf.Service
    ) {
      yield nested;
    }
    if (nested instanceof protobuf.Namespace || nested instanceof protobuf.Type) {
      yield* declarations(nested);
    }
  }
}

export interface CompareOptions {
  /** Declarations newer than the shipped official API, with their pinned shapes. */
  readonly ahead?: readonly AheadEntry[];
  /** Include dirs of each root, to check that a top-level declaration sits in the same file. */
  readonly ourIncludeDirs?: readonly string[];
  readonly officialIncludeDirs?: readonly string[];
}

/**
 * Every way in which `ours` differs from `official` on the wire, as readable lines; empty when
 * compatible. Declarations that `ours` leaves out are not reported.
 */
export function compareRoots(
  ours: protobuf.Root,
  official: protobuf.Root,
  options: CompareOptions = {},
): string[] {
  const problems: string[] = [];
  const ahead = new Map((options.ahead ?? []).map((entry) => [entry.name, entry]));
  const usedAhead = new Set<string>();

  const lookup = (fullName: string): protobuf.ReflectionObject | null => {
    try {
      return official.lookup(fullName);
    } catch {
      return null;
    }
  };

  // A missing official counterpart is fine only for a pinned "ahead" entry of the same shape.
  const checkAhead = (name: string, shape: string, missing: string): void => {
    const entry = ahead.get(name);
    if (entry === undefined) {
      problems.push(`${name}: ${missing}`);
      return;
    }
    usedAhead.add(name);
    if (entry.shape !== shape) {
      problems.push(
        `${name}: declared as "${shape}" but pinned as "${entry.shape}" (ahead of shipped API)`,
      );
    }
  };

  // An "ahead" entry that the official API now declares must go, so the real check takes over.
  const notAhead = (name: string): void => {
    if (ahead.has(name)) {
      usedAhead.add(name);
      problems.push(
        `${name}: listed as ahead of the shipped API, but the official API declares it; remove the entry`,
      );
    }
  };

  for (const decl of declarations(ours)) {
    const name = stripDot(decl.fullName);
    if (name.startsWith('google.protobuf.')) continue; // protobufjs' bundled well-known types
    const theirs = lookup(decl.fullName);

    if (theirs === null || stripDot(theirs.fullName) !== name) {
      checkAhead(name, describe(decl), `${describe(decl)} not in the official API`);
      if (ahead.has(name)) checkMembersAhead(decl, name, checkAhead);
      continue;
    }
    notAhead(name);

    if (!(
      (decl instanceof protobuf.Type && theirs instanceof protobuf.Type) ||
      (decl instanceof protobuf.Enum && theirs instanceof protobuf.Enum) ||
      (decl instanceof protobuf.Service && theirs instanceof protobuf.Service)
    )) {
      problems.push(`${name}: declared as a ${describe(decl)}, officially something else`);
      continue;
    }

    if (!(decl.parent instanceof protobuf.Type)) {
      const ourFile = relativeFile(decl.filename, options.ourIncludeDirs ?? []);
      const theirFile = relativeFile(theirs.filename, options.officialIncludeDirs ?? []);
      if (
        options.ourIncludeDirs !== undefined &&
        options.officialIncludeDirs !== undefined &&
        ourFile !== theirFile
      ) {
        problems.push(`${name}: declared in ${ourFile}, officially in ${theirFile}`);
      }
    }

    if (decl instanceof protobuf.Type && theirs instanceof protobuf.Type) {
      for (const field of decl.fieldsArray) {
        const fieldName = `${name}.${field.name}`;
        const other = theirs.fields[field.name];
        if (other === undefined) {
          const byNumber = theirs.fieldsById[field.id];
          const hint =
            byNumber === undefined ? '' : ` (official field ${field.id} is "${byNumber.name}")`;
          checkAhead(fieldName, describe(field), `field not in the official message${hint}`);
          continue;
        }
        notAhead(fieldName);
        const mine = describe(field);
        const official = describe(other);
        if (mine !== official) {
          problems.push(`${fieldName}: declared "${mine}", officially "${official}"`);
        }
      }
    } else if (decl instanceof protobuf.Enum && theirs instanceof protobuf.Enum) {
      for (const [valueName, value] of Object.entries(decl.values)) {
        const fullValueName = `${name}.${valueName}`;
        const other = theirs.values[valueName];
        if (other === undefined) {
          const sameNumber = Object.entries(theirs.values).find(([, v]) => v === value)?.[0];
          const hint = sameNumber === undefined ? '' : ` (official ${value} is "${sameNumber}")`;
          checkAhead(fullValueName, `= ${value}`, `enum value not in the official enum${hint}`);
          continue;
        }
        notAhead(fullValueName);
        if (other !== value) {
          problems.push(`${fullValueName}: declared = ${value}, officially = ${other}`);
        }
      }
    } else if (decl instanceof protobuf.Service && theirs instanceof protobuf.Service) {
      for (const method of decl.methodsArray) {
        const methodName = `${name}.${method.name}`;
        const other = theirs.methods[method.name];
        if (other === undefined) {
          checkAhead(methodName, describe(method), 'method not in the official service');
          continue;
        }
        notAhead(methodName);
        const mine = describe(method);
        const official = describe(other);
        if (mine !== official) {
          problems.push(`${methodName}: declared "${mine}", officially "${official}"`);
        }
      }
    }
  }

  for (const name of ahead.keys()) {
    if (!usedAhead.has(name)) {
      problems.push(`${name}: listed as ahead of the shipped API but not declared in proto/`);
    }
  }
  return problems;
}

// Members of a declaration that is itself ahead of the shipped API have nothing official to
// be compared with, so each must be pinned too.
function checkMembersAhead(
  decl: Declaration,
  name: string,
  checkAhead: (name: string, shape: string, missing: string) => void,
): void {
  const why = 'member of a declaration that is not in the official API';
  if (decl instanceof protobuf.Type) {
    for (const field of decl.fieldsArray) checkAhead(`${name}.${field.name}`, describe(field), why);
  } else if (decl instanceof protobuf.Enum) {
    for (const [valueName, value] of Object.entries(decl.values)) {
      checkAhead(`${name}.${valueName}`, `= ${value}`, why);
    }
  } else {
    for (const method of decl.methodsArray) {
      checkAhead(`${name}.${method.name}`, describe(method), why);
    }
  }
}
