import { Clock } from '../clock';
import { StartupError } from '../errors';
import { Hsm, HsmError, KeyInfo, Signer } from '../hsm/hsm';
import { KeyAlgorithm, keyAlgorithmInfo } from '../hsm/key-algorithm';
import { CaStore, CaRole } from '../storage/ca-store';
import { Logger } from '../log';
import { PreIssuanceLint } from './lint/pre-issuance-lint';
import {
  caName,
  ext,
  keyIdentifier,
  randomSerial,
  readCertificate,
  serialHex,
  signCertificate,
  spkiKeyBits,
  tbsCertificate,
} from './certificate';

export const ROOT_KEY_LABEL = 'hsmca-root-ca';
export const ISSUING_KEY_LABEL = 'hsmca-issuing-ca';

const YEAR_MS = 365.25 * 86400 * 1000;

/** A CA certificate with its HSM signer and what issuance needs of it, encoded once. */
export interface CaIdentity {
  certificate: Buffer;
  /** the CA's subject Name, DER: the issuer of what it signs */
  name: Buffer;
  spki: Buffer;
  keyId: Buffer;
  notAfter: Date;
  signer: Signer;
}

export interface CaLinks {
  ocspUrl: string;
  caIssuersUrl: string;
  crlUrl: string;
}

export interface CaHierarchy {
  root: CaIdentity;
  issuing: CaIdentity;
}

export interface HierarchyOptions {
  hsm: Hsm;
  store: CaStore;
  clock: Clock;
  log: Logger;
  keyAlgorithm: KeyAlgorithm;
  caName: string;
  publicUrl: string;
  /** the pre-issuance lint gate (strict, log only, when absent) */
  lint?: PreIssuanceLint;
}

/**
 * Loads the two-tier hierarchy, creating it on first start: a root CA and an
 * issuing CA (pathLenConstraint 0), both keys generated inside the HSM. On
 * every start the HSM's public key must be the key in each stored certificate
 * (as Boulder's LoadIssuer checks); otherwise start-up stops. `created`:
 * this start created a CA certificate (a first start, or one interrupted).
 */
export async function loadOrCreateHierarchy(o: HierarchyOptions): Promise<CaHierarchy & { created: boolean }> {
  let rootRec = await o.store.current('root');
  let created = false;
  if (!rootRec) {
    created = true;
    const key = await keyFor(o, ROOT_KEY_LABEL);
    const signer = await o.hsm.signer(key.label);
    const name = caName(`${o.caName} Root CA`, o.caName);
    const keyId = keyIdentifier(spkiKeyBits(key.publicKey));
    const now = o.clock.now();
    const serial = randomSerial();
    const tbs = tbsCertificate({
      serial,
      signatureAlgorithm: keyAlgorithmInfo(signer.algorithm).signatureAlgorithm,
      issuer: name,
      notBefore: new Date(now.getTime() - 3600_000),
      notAfter: new Date(now.getTime() + 20 * YEAR_MS),
      subject: name,
      spki: key.publicKey,
      extensions: [ext.basicConstraintsCa(), ext.caKeyUsage, ext.subjectKeyIdentifier(keyId)],
    });
    await lintOf(o).certificate(tbs, { kind: 'ca' });
    await saveCa(o, 'root', key.label, await signCertificate(tbs, signer));
    o.log.info('created the root CA certificate', { keyLabel: key.label, algorithm: key.algorithm });
    rootRec = await o.store.current('root');
  }
  const root = await identity(o, 'root', rootRec!.der, rootRec!.keyLabel);

  let issuingRec = await o.store.current('issuing');
  if (!issuingRec) {
    created = true;
    const key = await keyFor(o, ISSUING_KEY_LABEL);
    const now = o.clock.now();
    const tbs = tbsCertificate({
      serial: randomSerial(),
      signatureAlgorithm: keyAlgorithmInfo(root.signer.algorithm).signatureAlgorithm,
      issuer: root.name,
      notBefore: new Date(now.getTime() - 3600_000),
      notAfter: new Date(Math.min(now.getTime() + 10 * YEAR_MS, root.notAfter.getTime())),
      subject: caName(`${o.caName} Issuing CA`, o.caName),
      spki: key.publicKey,
      extensions: [
        ext.basicConstraintsCa(0),
        ext.caKeyUsage,
        ext.subjectKeyIdentifier(keyIdentifier(spkiKeyBits(key.publicKey))),
        ext.authorityKeyIdentifier(root.keyId),
        ext.authorityInfoAccess(undefined, `${o.publicUrl}/ca/root.crt`),
      ],
    });
    await lintOf(o).certificate(tbs, { kind: 'ca', issuerKeyId: root.keyId });
    await saveCa(o, 'issuing', key.label, await signCertificate(tbs, root.signer));
    o.log.info('created the issuing CA certificate', { keyLabel: key.label, algorithm: key.algorithm });
    issuingRec = await o.store.current('issuing');
  }
  const issuing = await identity(o, 'issuing', issuingRec!.der, issuingRec!.keyLabel);
  return { root, issuing, created };
}

const lintOf = (o: HierarchyOptions) => o.lint ?? new PreIssuanceLint({ log: o.log });

/** The key under `label`, generated in the HSM when absent (an interrupted first start reuses it). */
async function keyFor(o: HierarchyOptions, label: string): Promise<KeyInfo> {
  const existing = await o.hsm.getKey(label);
  if (existing) return existing;
  const key = await o.hsm.generateKey(label, o.keyAlgorithm);
  o.log.info('generated a CA key inside the HSM', { keyLabel: label, algorithm: o.keyAlgorithm, hsm: o.hsm.kind });
  return key;
}

async function saveCa(o: HierarchyOptions, role: CaRole, keyLabel: string, certificate: Buffer): Promise<void> {
  const c = readCertificate(certificate);
  await o.store.add({ role, keyLabel, serial: serialHex(c.serial), der: certificate, notAfter: c.notAfter, createdAt: o.clock.now() });
}

export async function identity(o: { hsm: Hsm }, role: string, certificate: Buffer, keyLabel: string): Promise<CaIdentity> {
  const c = readCertificate(certificate);
  let signer: Signer;
  try {
    signer = await o.hsm.signer(keyLabel);
  } catch (e) {
    if (e instanceof HsmError && e.code === 'keyNotFound') {
      throw new StartupError(`the HSM has no key labelled "${keyLabel}" for the ${role} CA certificate; refusing to start`);
    }
    throw e;
  }
  if (!signer.publicKey.equals(c.spki)) {
    throw new StartupError(
      `the HSM key "${keyLabel}" is not the key of the stored ${role} CA certificate (serial ${serialHex(c.serial)}); refusing to start`,
    );
  }
  return { certificate, name: c.subject, spki: c.spki, keyId: keyIdentifier(c.publicKeyBits), notAfter: c.notAfter, signer };
}
