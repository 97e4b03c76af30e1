import koffi from 'koffi';
import type * as pkcs11js from 'pkcs11js';
import { HsmError } from '../hsm';
import type { Handle } from './module-registry';

/**
 * pkcs11js passes attribute values as scalars and byte strings only, so it
 * cannot set an attribute whose value is itself a template
 * (CKA_WRAP_TEMPLATE, CKA_UNWRAP_TEMPLATE: PKCS#11 v2.40 §4.8 and §10.2). The
 * two calls that create the cluster wrapping key, C_GenerateKey and
 * C_UnwrapKey, go through koffi to the same module instead: the same library
 * in the same process, so pkcs11js's session and object handles are valid here.
 */
export interface NestedAttribute {
  type: number;
  value: boolean | number | Buffer | string | NestedAttribute[];
}

interface Bound {
  generateKey: (s: bigint, mech: unknown, tmpl: Buffer, n: number, out: bigint[]) => number;
  unwrapKey: (s: bigint, mech: unknown, key: bigint, wrapped: Buffer, len: number, tmpl: Buffer, n: number, out: bigint[]) => number;
}

/**
 * koffi keeps its type names in the native addon, once per process: where this
 * module is evaluated again in the same process (a test runner's fresh module
 * registry), the names are there already and are used as they are.
 */
function namedStruct(name: string, def: Record<string, string>): string {
  try {
    koffi.struct(name, def);
  } catch (e) {
    if (!/Duplicate type name/.test((e as Error).message)) throw e;
  }
  return name;
}
const CK_ATTRIBUTE = namedStruct('hsmca_CK_ATTRIBUTE', { type: 'unsigned long', pValue: 'void *', ulValueLen: 'unsigned long' });
namedStruct('hsmca_CK_MECHANISM', { mechanism: 'unsigned long', pParameter: 'void *', ulParameterLen: 'unsigned long' });
const ATTR_SIZE = koffi.sizeof(CK_ATTRIBUTE);
const ULONG = koffi.sizeof('unsigned long');
const bound = new Map<string, Bound>();

function bind(modulePath: string): Bound {
  let b = bound.get(modulePath);
  if (!b) {
    const lib = koffi.load(modulePath);
    b = {
      generateKey: lib.func('unsigned long C_GenerateKey(unsigned long, hsmca_CK_MECHANISM *, void *, unsigned long, _Out_ unsigned long *)') as Bound['generateKey'],
      unwrapKey: lib.func(
        'unsigned long C_UnwrapKey(unsigned long, hsmca_CK_MECHANISM *, unsigned long, void *, unsigned long, void *, unsigned long, _Out_ unsigned long *)',
      ) as Bound['unwrapKey'],
    };
    bound.set(modulePath, b);
  }
  return b;
}

function writeUlong(buf: Buffer, offset: number, v: bigint): void {
  if (ULONG === 8) buf.writeBigUInt64LE(v, offset);
  else buf.writeUInt32LE(Number(v), offset);
}

/** A CK_ATTRIBUTE array in memory; `keep` holds every buffer it points to until the call returns. */
function encode(attrs: NestedAttribute[], keep: Buffer[]): Buffer {
  const buf = Buffer.alloc(ATTR_SIZE * attrs.length);
  keep.push(buf);
  attrs.forEach((a, i) => {
    let value: Buffer;
    let len: number;
    if (Array.isArray(a.value)) {
      value = encode(a.value, keep);
      len = value.length;
    } else {
      if (typeof a.value === 'boolean') value = Buffer.from([a.value ? 1 : 0]);
      else if (typeof a.value === 'number') {
        value = Buffer.alloc(ULONG);
        writeUlong(value, 0, BigInt(a.value));
      } else value = Buffer.isBuffer(a.value) ? a.value : Buffer.from(a.value, 'utf8');
      keep.push(value);
      len = value.length;
    }
    writeUlong(buf, i * ATTR_SIZE, BigInt(a.type));
    writeUlong(buf, i * ATTR_SIZE + ULONG, BigInt(koffi.address(value) as bigint));
    writeUlong(buf, i * ATTR_SIZE + 2 * ULONG, BigInt(len));
  });
  return buf;
}

const handleOf = (h: Handle): bigint => (ULONG === 8 ? h.readBigUInt64LE(0) : BigInt(h.readUInt32LE(0)));
function toHandle(v: bigint): Handle {
  const b = Buffer.alloc(ULONG);
  writeUlong(b, 0, v);
  return b;
}

function check(rv: number, what: string): void {
  if (rv !== 0) throw new HsmError('hsmError', `${what} failed (CKR 0x${rv.toString(16)})`);
}

/** C_GenerateKey with a template that may hold nested templates. */
export function generateKeyNested(modulePath: string, session: Handle, mechanism: pkcs11js.Mechanism, template: NestedAttribute[]): Handle {
  const keep: Buffer[] = [];
  const out = [0n];
  const rv = bind(modulePath).generateKey(handleOf(session), { mechanism: mechanism.mechanism, pParameter: null, ulParameterLen: 0 }, encode(template, keep), template.length, out);
  check(rv, 'C_GenerateKey');
  return toHandle(BigInt(out[0]));
}

/** C_UnwrapKey (a mechanism without parameters) with a template that may hold nested templates. */
export function unwrapKeyNested(modulePath: string, session: Handle, mechanism: pkcs11js.Mechanism, unwrappingKey: Handle, wrapped: Buffer, template: NestedAttribute[]): Handle {
  const keep: Buffer[] = [];
  const out = [0n];
  const rv = bind(modulePath).unwrapKey(
    handleOf(session),
    { mechanism: mechanism.mechanism, pParameter: null, ulParameterLen: 0 },
    handleOf(unwrappingKey),
    wrapped,
    wrapped.length,
    encode(template, keep),
    template.length,
    out,
  );
  check(rv, 'C_UnwrapKey');
  return toHandle(BigInt(out[0]));
}
