import type { ServerResponse } from 'node:http';
import { CaError } from '../errors';

/**
 * ACME errors are problem documents (RFC 8555 6.7, RFC 7807), not the REST
 * API's JSON: `type` is urn:ietf:params:acme:error:<name>, per-identifier
 * failures go into `subproblems`.
 */
export type ProblemType =
  | 'accountDoesNotExist'
  | 'alreadyRevoked'
  | 'badCSR'
  | 'badNonce'
  | 'badPublicKey'
  | 'badRevocationReason'
  | 'badSignatureAlgorithm'
  | 'caa'
  | 'connection'
  | 'dns'
  | 'externalAccountRequired'
  | 'incorrectResponse'
  | 'invalidContact'
  | 'invalidProfile'
  | 'malformed'
  | 'orderNotReady'
  | 'rateLimited'
  | 'rejectedIdentifier'
  | 'serverInternal'
  | 'tls'
  | 'unauthorized'
  | 'unsupportedContact'
  | 'unsupportedIdentifier';

export interface ProblemDocument {
  type: string;
  detail: string;
  status?: number;
  subproblems?: { type: string; detail: string; identifier: { type: string; value: string } }[];
}

const STATUS: Partial<Record<ProblemType, number>> = {
  accountDoesNotExist: 400,
  badNonce: 400,
  unauthorized: 403,
  rateLimited: 429,
  serverInternal: 500,
  orderNotReady: 403,
  alreadyRevoked: 400,
  rejectedIdentifier: 400,
};

export class AcmeProblem extends Error {
  readonly status: number;
  constructor(
    readonly type: ProblemType,
    readonly detail: string,
    opts: { status?: number; subproblems?: ProblemDocument['subproblems']; headers?: Record<string, string> } = {},
  ) {
    super(detail);
    this.status = opts.status ?? STATUS[type] ?? 400;
    this.subproblems = opts.subproblems;
    this.headers = opts.headers;
  }
  readonly subproblems?: ProblemDocument['subproblems'];
  readonly headers?: Record<string, string>;

  document(): ProblemDocument {
    const d: ProblemDocument = { type: `urn:ietf:params:acme:error:${this.type}`, detail: this.detail, status: this.status };
    if (this.subproblems?.length) d.subproblems = this.subproblems;
    return d;
  }
}

/** The issuance pipeline's refusals, in ACME's words (a bad CSR, a name the policy refuses, an outage). */
export function problemFromCaError(e: CaError): AcmeProblem {
  switch (e.kind) {
    case 'badRequest':
    case 'policy':
      return new AcmeProblem(/name|san|dns|commonName/i.test(e.code) ? 'rejectedIdentifier' : 'badCSR', e.message);
    case 'forbidden':
      return new AcmeProblem(/name/i.test(e.code) ? 'rejectedIdentifier' : 'unauthorized', e.message);
    case 'rateLimited':
      return new AcmeProblem('rateLimited', e.message, { headers: e.headers });
    case 'conflict':
      return new AcmeProblem(e.code === 'alreadyRevoked' ? 'alreadyRevoked' : 'malformed', e.message);
    case 'notFound':
      return new AcmeProblem('malformed', e.message, { status: 404 });
    case 'tooLarge':
      return new AcmeProblem('malformed', e.message, { status: 413 });
    case 'unavailable':
      return new AcmeProblem('serverInternal', e.message, { status: 503 });
    default:
      return new AcmeProblem('serverInternal', 'an internal error occurred; it has been logged');
  }
}

export function sendProblem(res: ServerResponse, p: AcmeProblem): void {
  if (p.headers) for (const [k, v] of Object.entries(p.headers)) res.setHeader(k, v);
  const text = Buffer.from(JSON.stringify(p.document()), 'utf8');
  res.statusCode = p.status;
  res.setHeader('Content-Type', 'application/problem+json');
  res.setHeader('Content-Length', text.length);
  res.end(text);
}
