/**
 * Canonical JSON for audit event details, with secret-like fields redacted:
 * the stored text that the event hash covers.
 */

const SECRET_KEY = /^(token|bearer|authorization|pin|so_?pin|password|passphrase|secret|private_?key|key_?bytes)$/i;
const MAX_DEPTH = 16;

/** Lone surrogates cannot be stored as UTF-8; they become U+FFFD before hashing, as the database would store them. NUL is refused by PostgreSQL text. */
export function wellFormed(s: string): string {
  return s.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]|\u0000/g, '\uFFFD');
}

/**
 * Canonical JSON: object keys sorted, no whitespace, undefined and functions
 * left out, Dates as ISO strings, bigints as strings, binary as its length
 * only (never key bytes), fields with secret-like names redacted.
 */
export function canonicalJson(v: unknown, depth = 0): string {
  if (depth > MAX_DEPTH) return '"[too deep]"';
  if (v === null || v === undefined) return 'null';
  switch (typeof v) {
    case 'boolean':
      return v ? 'true' : 'false';
    case 'number':
      return Number.isFinite(v) ? JSON.stringify(v) : 'null';
    case 'bigint':
      return JSON.stringify(v.toString());
    case 'string':
      return JSON.stringify(wellFormed(v));
    case 'object':
      break;
    default:
      return 'null';
  }
  if (v instanceof Date) return isNaN(v.getTime()) ? 'null' : JSON.stringify(v.toISOString());
  if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer) return JSON.stringify(`[binary, ${(v as ArrayBuffer).byteLength} bytes]`);
  if (Array.isArray(v)) return '[' + v.map((x) => canonicalJson(x, depth + 1)).join(',') + ']';
  const obj = v as Record<string, unknown>;
  const parts: string[] = [];
  for (const k of Object.keys(obj).sort()) {
    const x = obj[k];
    if (x === undefined || typeof x === 'function' || typeof x === 'symbol') continue;
    parts.push(JSON.stringify(wellFormed(k)) + ':' + (SECRET_KEY.test(k) ? '"[redacted]"' : canonicalJson(x, depth + 1)));
  }
  return '{' + parts.join(',') + '}';
}
