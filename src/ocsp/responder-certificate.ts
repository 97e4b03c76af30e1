import { Clock } from '../clock';
import { StartupError } from '../errors';
import { Hsm, HsmError } from '../hsm/hsm';
import { KeyAlgorithm, keyAlgorithmInfo } from '../hsm/key-algorithm';
import { Logger } from '../log';
import { CaStore } from '../storage/ca-store';
import { OID } from '../asn1/oids';
import * as der from '../asn1/der';
import { caName, ext, keyIdentifier, randomSerial, readCertificate, serialHex, signCertificate, spkiKeyBits, tbsCertificate } from '../ca/certificate';
import { CaIdentity, identity } from '../ca/hierarchy';
import { extension } from '../ca/profiles';
import type { ResponderIdentity } from './response';
import { PreIssuanceLint } from '../ca/lint/pre-issuance-lint';

const DAY_MS = 86_400_000;

export interface ResponderCertificateSettings {
  /** lifetime of a delegated OCSP signing certificate */
  validityDays: number;
  /** renew when less than this fraction of the lifetime remains */
  renewAtFraction: number;
}

/**
 * The delegated OCSP signing certificate (RFC 6960 4.2.2.2): issued by the
 * issuing CA with id-kp-OCSPSigning and id-pkix-ocsp-nocheck, short-lived, its
 * key generated inside the HSM, renewed well before it expires. The issuing CA
 * key itself signs only certificates and CRLs.
 */
export class ResponderCertificateManager {
  private currentIdentity?: ResponderIdentity & { notAfter: Date; notBefore: Date; label: string };
  private renewing?: Promise<void>;
  private readonly listeners: (() => void)[] = [];
  /** several instances: only the current leader renews (src/cluster/); set by issueOnlyWhen */
  private leads: () => boolean = () => true;

  constructor(
    private readonly deps: {
      hsm: Hsm;
      store: CaStore;
      issuer: CaIdentity;
      clock: Clock;
      log: Logger;
      keyAlgorithm: KeyAlgorithm;
      caName: string;
      settings: ResponderCertificateSettings;
      /** false in follower workers: they adopt what the leader issues and never generate keys */
      canIssue?: boolean;
      /** the pre-issuance lint gate (strict, log only, when absent) */
      lint?: PreIssuanceLint;
      /** the issuing CA's id (migration 013), in the key label of every issuer but the first */
      issuerId?: number;
    },
  ) {}

  /** From now on a new certificate is issued only while `leads()` says so; otherwise the stored one is adopted. */
  issueOnlyWhen(leads: () => boolean): void {
    this.leads = leads;
  }

  onRenewed(fn: () => void): void {
    this.listeners.push(fn);
  }

  current(): ResponderIdentity & { label: string } {
    if (!this.currentIdentity) throw new Error('the OCSP responder certificate is not loaded');
    return this.currentIdentity;
  }

  /** Loads the stored responder certificate, or issues a new one when missing or due for renewal. */
  ensureFresh(): Promise<void> {
    return (this.renewing ??= this.doEnsure().finally(() => (this.renewing = undefined)));
  }

  private async doEnsure(): Promise<void> {
    const { store, clock, settings } = this.deps;
    // several issuing CAs each have responder certificates of their own: the newest of this one's
    const rec = await store.newest('ocsp', (d) => readCertificate(d).issuer.equals(this.deps.issuer.name));
    // a new key, or a new certificate for the same key (a read-only software HSM store)
    const changed = rec && (rec.keyLabel !== this.currentIdentity?.label || !Buffer.from(rec.der).equals(Buffer.from(this.currentIdentity.certificate)));
    if (rec && changed) {
      try {
        const id = await identity(this.deps, 'OCSP responder', rec.der, rec.keyLabel);
        const c = readCertificate(rec.der);
        this.currentIdentity = { signer: id.signer, certificate: rec.der, notAfter: c.notAfter, notBefore: c.notBefore, label: rec.keyLabel };
        for (const l of this.listeners) l();
      } catch (e) {
        // The responder certificate is disposable: a lost or mismatched key gets a new one.
        if (!(e instanceof StartupError)) throw e;
        this.deps.log.warn('the OCSP responder key is missing or mismatched; issuing a new responder certificate', { keyLabel: rec.keyLabel });
      }
    }
    if (this.deps.canIssue === false || !this.leads()) {
      if (!this.currentIdentity) throw new StartupError('no usable OCSP responder certificate; the leader process issues it');
      return;
    }
    const now = clock.now().getTime();
    const cur = this.currentIdentity;
    if (cur) {
      const lifetime = cur.notAfter.getTime() - cur.notBefore.getTime();
      if (cur.notAfter.getTime() - now > lifetime * settings.renewAtFraction) return;
    }
    await this.issue();
    for (const l of this.listeners) l();
  }

  private async issue(): Promise<void> {
    const { hsm, issuer, clock, log, settings, store } = this.deps;
    const now = clock.now();
    const id = this.deps.issuerId;
    let label = `hsmca-ocsp-${id !== undefined && id > 1 ? `i${id}-` : ''}${now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}`;
    let key = await hsm.getKey(label);
    try {
      key ??= await hsm.generateKey(label, this.deps.keyAlgorithm);
    } catch (e) {
      // A software HSM store shared read-only between hosts takes no new key: the renewed
      // certificate certifies the current key (rotated when the store is re-made; docs/hsm.md).
      const current = this.currentIdentity && (await hsm.getKey(this.currentIdentity.label));
      if (!(e instanceof HsmError && e.code === 'readOnly' && current)) throw e;
      log.info('the HSM store is read-only: renewing the OCSP responder certificate for its current key', { keyLabel: current.label });
      label = current.label;
      key = current;
    }
    const notBefore = new Date(Math.floor((now.getTime() - 60_000) / 1000) * 1000);
    let notAfter = new Date(notBefore.getTime() + settings.validityDays * DAY_MS);
    if (notAfter > issuer.notAfter) notAfter = issuer.notAfter;
    const serial = randomSerial();
    const tbs = tbsCertificate({
      serial,
      signatureAlgorithm: keyAlgorithmInfo(issuer.signer.algorithm).signatureAlgorithm,
      issuer: issuer.name,
      notBefore,
      notAfter,
      subject: caName(`${this.deps.caName} OCSP Responder ${now.toISOString().slice(0, 10)}`, this.deps.caName),
      spki: key.publicKey,
      extensions: [
        ext.basicConstraintsEndEntity,
        extension(OID.keyUsage, true, der.namedBits([0])),
        ext.extKeyUsage([OID.ocspSigning]),
        ext.ocspNoCheck,
        ext.subjectKeyIdentifier(keyIdentifier(spkiKeyBits(key.publicKey))),
        ext.authorityKeyIdentifier(issuer.keyId),
      ],
    });
    await (this.deps.lint ?? new PreIssuanceLint({ log })).certificate(tbs, { kind: 'ocsp-responder', issuerKeyId: issuer.keyId });
    const certificate = await signCertificate(tbs, issuer.signer);
    await store.add({ role: 'ocsp', keyLabel: label, serial: serialHex(serial), der: certificate, notAfter, createdAt: now });
    const signer = await hsm.signer(label);
    this.currentIdentity = { signer, certificate, notAfter, notBefore, label };
    log.info('issued a new OCSP responder certificate', { keyLabel: label, serial: serialHex(serial), notAfter: notAfter.toISOString() });
  }
}
