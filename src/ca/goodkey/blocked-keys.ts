import { createPublicKey } from 'node:crypto';
import * as der from '../../asn1/der';
import { Clock } from '../../clock';
import { CaError } from '../../errors';
import { BlockedKeyRecord, BlockedKeyStore } from '../../storage/blocked-key-store';
import type { CertificateRecord } from '../../storage/certificate-store';
import { KeyRefusal } from './key-refusal';
import { spkiSha256 } from './spki-digest';

/** Body of POST /api/v1/blocked-keys (and the CLI): exactly one way to name the key. */
export interface BlockKeyRequest {
  publicKey?: unknown;
  spkiSha256?: unknown;
  certificate?: unknown;
  comment?: unknown;
}

export interface KeyBlockedEvent {
  record: BlockedKeyRecord;
}

const MAX_PEM = 64 * 1024;
const MAX_COMMENT = 1024;
const bad = (code: string, message: string) => new CaError('badRequest', code, message);

/** The SubjectPublicKeyInfo of an X.509 certificate (RFC 5280 4.1: the seventh field of TBSCertificate, or sixth without the version). */
export function spkiOfCertificate(cert: Buffer): Buffer {
  const [tbs] = der.children(der.expect(der.readTop(cert), der.Tag.SEQUENCE, 'Certificate'), 3);
  const fields = der.children(der.expect(tbs, der.Tag.SEQUENCE, 'TBSCertificate'), 12);
  const spki = fields[fields[0]?.tag === 0xa0 ? 6 : 5];
  return der.raw(der.expect(spki, der.Tag.SEQUENCE, 'SubjectPublicKeyInfo'));
}

/** The entry a revocation for keyCompromise adds: the certificate's key, with its serial. */
export function compromisedKeyEntry(r: CertificateRecord, at: Date, by: string): BlockedKeyRecord {
  return { spkiSha256: spkiSha256(spkiOfCertificate(r.der)), addedAt: at, source: 'keyCompromise', serial: r.serial, addedBy: by, comment: null };
}

/**
 * Blocked keys (Boulder's blockedKeys table): no certificate is issued for a
 * key known to be compromised. A revocation for keyCompromise blocks the
 * certificate's key in the revocation's own transaction (RevocationService);
 * admins add keys by public key, certificate or digest. The issuance
 * pipeline calls `check` with every CSR's key.
 */
export class BlockedKeyService {
  private readonly listeners: ((e: KeyBlockedEvent) => void)[] = [];

  constructor(private readonly deps: { store: BlockedKeyStore; clock: Clock }) {}

  onBlocked(fn: (e: KeyBlockedEvent) => void): void {
    this.listeners.push(fn);
  }

  /** 422 blockedKey when the key is blocked: one indexed lookup. */
  async check(spki: Buffer): Promise<void> {
    const digest = spkiSha256(spki);
    const entry = await this.deps.store.get(digest);
    if (!entry) return;
    const why = entry.source === 'keyCompromise' ? 'a certificate for it was revoked for keyCompromise' : 'an administrator blocked it';
    throw new KeyRefusal('blockedKey', 'blocked', `this public key is blocked (${why}); make a new key`, digest);
  }

  /** Adds a key; `created` false when it was blocked already (the first entry is kept). */
  async add(req: BlockKeyRequest, by: string): Promise<{ record: BlockedKeyRecord; created: boolean }> {
    if (!req || typeof req !== 'object' || Array.isArray(req)) {
      throw bad('malformedJson', 'the body must be a JSON object: {"publicKey": PEM} or {"certificate": PEM} or {"spkiSha256": hex}, and an optional "comment"');
    }
    const given = (['publicKey', 'spkiSha256', 'certificate'] as const).filter((k) => req[k] !== undefined && req[k] !== null);
    if (given.length !== 1) throw bad('invalidBlockedKey', 'give exactly one of "publicKey" (PEM), "certificate" (PEM) or "spkiSha256" (64 hex digits)');
    let comment: string | null = null;
    if (req.comment !== undefined && req.comment !== null) {
      if (typeof req.comment !== 'string' || req.comment.length > MAX_COMMENT) throw bad('invalidComment', `"comment" must be a string of at most ${MAX_COMMENT} characters`);
      comment = req.comment;
    }
    const digest = digestOf(given[0], req[given[0]]);
    const { record, created } = await this.deps.store.add({ spkiSha256: digest, addedAt: this.deps.clock.now(), source: 'admin', serial: null, addedBy: by, comment });
    if (created) for (const l of this.listeners) l({ record });
    return { record, created };
  }

  list(q: { limit: number; afterId?: number }) {
    return this.deps.store.list(q);
  }

  /** A revocation blocked a key (RevocationService): announced like an admin's addition. */
  announce(record: BlockedKeyRecord): void {
    for (const l of this.listeners) l({ record });
  }
}

function digestOf(kind: 'publicKey' | 'spkiSha256' | 'certificate', value: unknown): string {
  if (kind === 'spkiSha256') {
    if (typeof value !== 'string' || !/^[0-9a-fA-F]{64}$/.test(value)) throw bad('invalidSpkiSha256', '"spkiSha256" must be the SHA-256 of a SubjectPublicKeyInfo, 64 hex digits');
    return value.toLowerCase();
  }
  const label = kind === 'publicKey' ? 'PUBLIC KEY' : 'CERTIFICATE';
  const code = kind === 'publicKey' ? 'invalidPublicKey' : 'invalidCertificate';
  if (typeof value !== 'string' || value.length > MAX_PEM) throw bad(code, `"${kind}" must be a PEM "${label}" of at most ${MAX_PEM} bytes`);
  const body = der.pemDecode(value, [label]);
  if (!body) throw bad(code, `"${kind}" holds no PEM "${label}" block`);
  let spki: Buffer;
  try {
    spki = kind === 'publicKey' ? body : spkiOfCertificate(body);
    createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch {
    throw bad(code, `the ${kind === 'publicKey' ? 'public key' : "certificate's public key"} cannot be read`);
  }
  return spkiSha256(spki);
}
