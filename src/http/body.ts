import type { IncomingMessage } from 'node:http';

/** readBody's rejection when the body is larger than its limit */
export const BODY_TOO_LARGE = Symbol('body too large');
/** readBody's rejection when the client went away while sending its body: nothing to answer */
export const BODY_ABORTED = Symbol('body aborted');

/** The body, up to `limit` bytes; a declared or actual size past it is refused without reading on. */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) return Promise.reject(BODY_TOO_LARGE);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const settle = (err: unknown, body?: Buffer) => {
      if (settled) return;
      settled = true;
      req.removeListener('data', onData);
      if (err) reject(err);
      else resolve(body!);
    };
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > limit) settle(BODY_TOO_LARGE);
      else chunks.push(c);
    };
    req.on('data', onData);
    req.on('end', () => settle(undefined, chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size)));
    req.on('error', () => settle(BODY_ABORTED));
    req.on('close', () => settle(req.complete ? undefined : BODY_ABORTED, Buffer.concat(chunks, size)));
  });
}
