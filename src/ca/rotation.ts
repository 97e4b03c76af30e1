import * as der from '../asn1/der';
import { CaError } from '../errors';
import { HsmError, KeyInfo } from '../hsm/hsm';
import { keyAlgorithmInfo } from '../hsm/key-algorithm';
import { IdTaken, IssuerStore } from '../storage/issuer-store';
import type { Core } from '../core';
import { lintGate } from '../service-events';
import { caName, ext, keyIdentifier, randomSerial, readCertificate, serialHex, signCertificate, spkiKeyBits, tbsCertificate } from './certificate';
import { CaIdentity, identity } from './hierarchy';
import { hsmFailure } from './issuance';
import { IssuerSummary } from './issuers';

const YEAR_MS = 365.25 * 86400 * 1000;

/** Key labels of the CA keys made by ceremonies (the first ones are hierarchy.ts's). */
export const issuerKeyLabel = (id: number) => `hsmca-issuing-ca-${id}`;
export const rootKeyLabel = (id: number) => `hsmca-root-ca-${id}`;

export interface RotationResult {
  issuer: IssuerSummary;
  previousIssuerId: number;
  certificate: string;
}

export interface RootRenewalResult {
  rootId: number;
  previousRootId: number;
  root: string;
  /** the new root's key certified by the old root, and the old root's key by the new */
  crossCertificates: { id: number; subjectRootId: number; issuerRootId: number; certificate: string }[];
}

/**
 * Issuing CA rotation (issue 17), without downtime:
 *
 * 1. a new issuing key is generated inside the HSM (sensitive, non-extractable);
 * 2. the active root signs its certificate (pathLenConstraint 0), linted;
 * 3. it is recorded 'pending' and readied: its delegated OCSP responder
 *    certificate and its first CRL are made before anyone can need them;
 * 4. one transaction makes it active and the old issuer previous: every
 *    process (workers, other instances) reads either the old or the new
 *    active issuer and adopts the new one within seconds;
 * 5. the previous issuer keeps signing its own CRLs and OCSP responder
 *    certificates, so everything it issued keeps validating.
 *
 * `by` names who asked (the audit actor), e.g. "admin:alice" or "cli".
 */
export async function rotateIssuer(core: Core, by: string): Promise<RotationResult> {
  refuseShards(core);
  const store = new IssuerStore(core.db);
  await core.issuers.load();
  const previous = core.issuers.active();
  const root = core.issuers.activeRoot();
  const id = await store.nextIssuerId();
  const label = issuerKeyLabel(id);
  const key = await freshKey(core, label);
  const now = core.clock.now();
  const tbs = tbsCertificate({
    serial: randomSerial(),
    signatureAlgorithm: keyAlgorithmInfo(root.identity.signer.algorithm).signatureAlgorithm,
    issuer: root.identity.name,
    notBefore: new Date(now.getTime() - 3600_000),
    notAfter: new Date(Math.min(now.getTime() + 10 * YEAR_MS, root.identity.notAfter.getTime())),
    subject: caName(`${core.config.caName} Issuing CA ${id}`, core.config.caName),
    spki: key.publicKey,
    extensions: [
      ext.basicConstraintsCa(0),
      ext.caKeyUsage,
      ext.subjectKeyIdentifier(keyIdentifier(spkiKeyBits(key.publicKey))),
      ext.authorityKeyIdentifier(root.identity.keyId),
      ext.authorityInfoAccess(undefined, `${core.config.publicUrl}/ca/root/${root.id}.crt`),
    ],
  });
  await lintGate(core.audit, core.log).certificate(tbs, { kind: 'ca', issuerKeyId: root.identity.keyId });
  const certificate = await sign(tbs, root.identity);
  try {
    await store.addIssuer({ id, keyLabel: label, der: certificate, rootId: root.id, status: 'pending', createdAt: now });
  } catch (e) {
    if (e instanceof IdTaken) throw new CaError('conflict', 'ceremonyInProgress', 'another rotation is in progress; try again when it has finished');
    throw e;
  }
  try {
    // Readied before it is active: its OCSP responder certificate and its first CRL.
    const ident = await identity(core, `issuing (id ${id})`, certificate, label);
    await core.issuers.build(id, label, 'pending', now, root.id, ident, root.identity);
    await store.activateIssuer(id);
  } catch (e) {
    await store.dropPending(id).catch(() => undefined);
    throw e instanceof HsmError ? hsmFailure(e) : e;
  }
  await core.issuers.load();
  const issuer = core.issuers.describe(core.issuers.byId(id)!);
  await core.audit.record({
    type: 'issuerRotated',
    actor: by,
    subject: String(id),
    details: { issuerId: id, previousIssuerId: previous.id, rootId: root.id, keyLabel: label, serialNumber: issuer.serialNumber, notAfter: issuer.notAfter, hsm: core.hsm.kind },
  });
  core.log.info('rotated the issuing CA', { issuerId: id, previousIssuerId: previous.id, keyLabel: label, by });
  return { issuer, previousIssuerId: previous.id, certificate: der.pemEncode('CERTIFICATE', certificate) };
}

/**
 * Root renewal (issue 17): a new root key born in the HSM and its
 * self-signed certificate, and cross-certificates both ways, so that a
 * relying party that trusts either root validates chains under the other:
 *
 * - old root → new root's key: clients that trust only the old root accept
 *   issuers signed by the new root (chain: leaf, issuer, cross, old root);
 * - new root → old root's key: clients that trust only the new root accept
 *   what the old root's issuers signed.
 *
 * The new root becomes active: the next rotation's issuing CA is signed by
 * it. The active issuer is not changed.
 */
export async function renewRoot(core: Core, by: string): Promise<RootRenewalResult> {
  const store = new IssuerStore(core.db);
  await core.issuers.load();
  const old = core.issuers.activeRoot();
  const id = await store.nextRootId();
  const label = rootKeyLabel(id);
  const key = await freshKey(core, label);
  const lint = lintGate(core.audit, core.log);
  const now = core.clock.now();
  const name = caName(`${core.config.caName} Root CA ${id}`, core.config.caName);
  const keyId = keyIdentifier(spkiKeyBits(key.publicKey));
  const notBefore = new Date(now.getTime() - 3600_000);
  const notAfter = new Date(now.getTime() + 20 * YEAR_MS);
  const signer = await core.hsm.signer(label);
  const selfTbs = tbsCertificate({
    serial: randomSerial(),
    signatureAlgorithm: keyAlgorithmInfo(signer.algorithm).signatureAlgorithm,
    issuer: name,
    notBefore,
    notAfter,
    subject: name,
    spki: key.publicKey,
    extensions: [ext.basicConstraintsCa(), ext.caKeyUsage, ext.subjectKeyIdentifier(keyId)],
  });
  await lint.certificate(selfTbs, { kind: 'ca' });
  const rootDer = await sign(selfTbs, { signer } as CaIdentity);
  const newRoot = await identity(core, `root (id ${id})`, rootDer, label);

  // A cross-certificate: `subject`'s name and key, signed by `issuer`, valid while both are.
  const cross = async (subject: CaIdentity, issuer: CaIdentity) => {
    const tbs = tbsCertificate({
      serial: randomSerial(),
      signatureAlgorithm: keyAlgorithmInfo(issuer.signer.algorithm).signatureAlgorithm,
      issuer: issuer.name,
      notBefore,
      notAfter: new Date(Math.min(subject.notAfter.getTime(), issuer.notAfter.getTime())),
      subject: subject.name,
      spki: subject.spki,
      extensions: [ext.basicConstraintsCa(), ext.caKeyUsage, ext.subjectKeyIdentifier(subject.keyId), ext.authorityKeyIdentifier(issuer.keyId)],
    });
    await lint.certificate(tbs, { kind: 'ca', issuerKeyId: issuer.keyId });
    return sign(tbs, issuer);
  };
  const forward = await cross(newRoot, old.identity);
  const backward = await cross(old.identity, newRoot);
  let ids: number[];
  try {
    ids = await store.addActiveRoot({ id, keyLabel: label, der: rootDer, status: 'active', createdAt: now }, [
      { subjectRootId: id, issuerRootId: old.id, der: forward, createdAt: now },
      { subjectRootId: old.id, issuerRootId: id, der: backward, createdAt: now },
    ]);
  } catch (e) {
    if (e instanceof IdTaken) throw new CaError('conflict', 'ceremonyInProgress', 'another root renewal is in progress; try again when it has finished');
    throw e;
  }
  await core.issuers.load();
  await core.audit.record({
    type: 'rootRenewed',
    actor: by,
    subject: String(id),
    details: {
      rootId: id,
      previousRootId: old.id,
      keyLabel: label,
      serialNumber: serialHex(readCertificate(rootDer).serial),
      crossCertificateIds: ids,
      hsm: core.hsm.kind,
    },
  });
  core.log.info('renewed the root CA', { rootId: id, previousRootId: old.id, keyLabel: label, by });
  return {
    rootId: id,
    previousRootId: old.id,
    root: der.pemEncode('CERTIFICATE', rootDer),
    crossCertificates: [
      { id: ids[0], subjectRootId: id, issuerRootId: old.id, certificate: der.pemEncode('CERTIFICATE', forward) },
      { id: ids[1], subjectRootId: old.id, issuerRootId: id, certificate: der.pemEncode('CERTIFICATE', backward) },
    ],
  };
}

/** Partitioned CRLs name /crl/{shard} in certificates: those URLs belong to the first issuer's scope alone. */
function refuseShards(core: Core): void {
  if (core.config.crlShards > 1) {
    throw new CaError('conflict', 'rotationUnsupported', 'issuing CA rotation is not available with partitioned CRLs (HSMCA_CRL_SHARDS > 1)');
  }
}

/**
 * A CA key generated inside the HSM under `label`. A key already there under
 * that label is a ceremony interrupted before its certificate was stored: it
 * was never certified, so it is reused rather than left behind.
 */
async function freshKey(core: Core, label: string): Promise<KeyInfo> {
  try {
    const existing = await core.hsm.getKey(label);
    if (existing) return existing;
    return await core.hsm.generateKey(label, core.config.keyAlgorithm);
  } catch (e) {
    throw hsmFailure(e);
  }
}

async function sign(tbs: Buffer, by: Pick<CaIdentity, 'signer'>): Promise<Buffer> {
  try {
    return await signCertificate(tbs, by.signer);
  } catch (e) {
    throw hsmFailure(e);
  }
}
