import type { IncomingMessage, ServerResponse } from 'node:http';
import bodyParser from 'body-parser';
import { CaError } from '../errors';
import { BODY_TOO_LARGE, readBody } from './body';

const NOT_JSON = new CaError('badRequest', 'malformedJson', 'the request body is not valid JSON');
const TOO_LARGE = new CaError('tooLarge', 'bodyTooLarge', 'the request body is too large');
const FIRST_CHAR = /^[\x20\x09\x0a\x0d]*([^\x20\x09\x0a\x0d])/;
const UTF8_CHARSET = /;\s*charset\s*=\s*"?utf-8"?\s*(;|$)/i;

/** Whether the request carries a body at all (type-is's rule, which body-parser follows). */
function hasBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || !isNaN(Number(req.headers['content-length'] ?? NaN));
}

/**
 * The request's JSON body, as body-parser's strict JSON parser reads it:
 * undefined when the request has no body, {} for an empty one, an object or
 * an array at the top, a UTF-8 BOM dropped; at most `limit` bytes.
 *
 * Plain UTF-8 bodies (nearly all of them) are read and parsed here, without
 * a stream pipeline. A Content-Encoding (gzip, deflate, br) or another charset
 * is handed to body-parser itself, which decodes them; both give the same
 * answers (tested side by side).
 */
export async function readJsonBody(req: IncomingMessage, res: ServerResponse, limit: number): Promise<unknown> {
  if (!hasBody(req)) return undefined;
  const encoding = req.headers['content-encoding'];
  const type = req.headers['content-type'];
  const plain = (encoding === undefined || encoding.trim().toLowerCase() === 'identity') && (type === undefined || !/charset/i.test(type) || UTF8_CHARSET.test(type));
  if (!plain) return decodeWithBodyParser(req, res, limit);
  let raw: Buffer;
  try {
    raw = await readBody(req, limit);
  } catch (e) {
    throw e === BODY_TOO_LARGE ? TOO_LARGE : e;
  }
  return parseStrictJson(raw);
}

/** Strict JSON as body-parser reads it: UTF-8 (a BOM dropped), an object or array at the top, an empty body as {}. */
export function parseStrictJson(raw: Buffer): unknown {
  let text = raw.toString('utf8');
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  if (text.length === 0) return {};
  const first = FIRST_CHAR.exec(text)?.[1];
  if (first !== '{' && first !== '[') throw NOT_JSON;
  try {
    return JSON.parse(text);
  } catch {
    throw NOT_JSON;
  }
}

const parsers = new Map<number, ReturnType<typeof bodyParser.json>>();

function decodeWithBodyParser(req: IncomingMessage, res: ServerResponse, limit: number): Promise<unknown> {
  let parse = parsers.get(limit);
  if (!parse) {
    parse = bodyParser.json({ limit, strict: true, type: () => true });
    parsers.set(limit, parse);
  }
  const r = req as IncomingMessage & { body?: unknown };
  return new Promise((resolve, reject) => {
    parse(r as never, res as never, (err?: unknown) => (err ? reject(bodyError(err)) : resolve(r.body)));
  });
}

/** body-parser's errors in the contract's terms; an aborted upload stays as it is (nobody to answer). */
export function bodyError(err: unknown): unknown {
  const type = (err as { type?: string })?.type;
  if (type === 'entity.too.large') return TOO_LARGE;
  if (type === 'entity.parse.failed') return NOT_JSON;
  if (type === 'encoding.unsupported' || type === 'charset.unsupported') {
    return new CaError('badRequest', 'unsupportedEncoding', 'the request body must be UTF-8 JSON');
  }
  const status = (err as { status?: number })?.status;
  if (type !== 'request.aborted' && typeof status === 'number' && status >= 400 && status < 500) {
    return new CaError('badRequest', 'badRequest', 'the request could not be read');
  }
  return err;
}
