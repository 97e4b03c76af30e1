import * as der from '../asn1/der';
import { OID } from '../asn1/oids';
import { Clock } from '../clock';
import { CaError } from '../errors';
import { HsmError } from '../hsm/hsm';
import { keyAlgorithmInfo } from '../hsm/key-algorithm';
import { Logger } from '../log';
import { CertificateStore, SerialCollision } from '../storage/certificate-store';
import { ext, keyIdentifier, randomSerial, serialHex, signCertificate, tbsCertificate } from './certificate';
import { ParsedCsr, Sans, csrFromPem, ipToBytes, nameText, parseCsrSync, validDnsName } from './csr';
import { caSubjectGuard } from './subject';
import type { CrlShardPlan } from './crl-shards';
import { CaHierarchy, CaIdentity, CaLinks } from './hierarchy';
import { Profile, ProfileRegistry, extension } from './profiles';
import type { PreparedEvent } from '../audit/chain';
import { PreIssuanceLint } from './lint/pre-issuance-lint';

export interface IssueRequest {
  csr?: unknown;
  profile?: unknown;
  validityDays?: unknown;
}

/** Who asks: the token's id and role, and what the token may do (issue scope). */
export interface Principal {
  tokenId: string;
  name: string;
  /** 'system': the service itself, e.g. its own HTTPS server certificate (src/tls/), bound by no scope */
  role: 'admin' | 'requester' | 'system';
  /** the token's scope (names, profiles, validity), checked by the issuance policy */
  scope?: unknown;
}

export interface IssueResponse {
  serialNumber: string;
  certificate: string;
  chain: string[];
  notBefore: string;
  notAfter: string;
}

/** What an authorisation policy sees of a request before anything is recorded. */
export interface IssuanceIntent {
  principal: Principal;
  profile: Profile;
  sans: Sans;
  commonNames: string[];
  validityDays: number;
}

export interface IssuancePolicy {
  /** throws CaError('forbidden', ...) naming the rule that refuses the intent */
  check(intent: IssuanceIntent): void | Promise<void>;
  /** the subject Name (DER) the certificate gets, from the CSR's; throws CaError to refuse */
  subjectFor?(intent: IssuanceIntent, csrSubject: Buffer): Buffer;
}

export interface Issued {
  principal: Principal;
  serial: string;
  profile: string;
  sans: Sans;
  subject: string;
}

export interface IssuanceHooks {
  /** the audit record of an issuance, committed in the same transaction as the certificate */
  auditEvent?(e: Issued): PreparedEvent;
  /** after the record is committed (metrics) */
  issued?(e: Issued): void | Promise<void>;
  refused?(e: { principal: Principal; error: CaError }): void | Promise<void>;
}

/** The active issuer's share of every certificate, encoded once (IssuanceService.signingContext). */
interface SigningContext {
  issuerId?: number;
  issuing: CaIdentity;
  root: CaIdentity;
  chain: string[];
  fixedExtensions: Buffer[];
  crlDistributionPoints: Buffer;
  sigAlg: Buffer;
}

const SKEW_MS = 60_000;
const DAY_MS = 86_400_000;
const MAX_SERIAL_ATTEMPTS = 5;

/**
 * The issuance pipeline (STYLE.md practice 5), one small stage per step:
 * parse and verify the CSR, apply the profile, check policy, build the
 * to-be-signed certificate, record the intent, sign, store, answer.
 */
export class IssuanceService {
  private readonly refuseCaSubject: (subject: Buffer) => void;
  private readonly lint: PreIssuanceLint;
  private context?: SigningContext;

  constructor(
    private readonly deps: {
      hierarchy: CaHierarchy;
      links: CaLinks;
      /**
       * Several issuing CAs (issuers.ts): new certificates come from the
       * active one, read at each issuance, with its own links; absent: the
       * hierarchy's issuing CA and `links`.
       */
      issuers?: { active(): { id: number; identity: CaIdentity; root: CaIdentity; links: CaLinks } };
      store: CertificateStore;
      profiles: ProfileRegistry;
      clock: Clock;
      log: Logger;
      policy?: IssuancePolicy;
      hooks?: IssuanceHooks;
      /** the pre-issuance lint gate; a strict one that only logs when absent */
      lint?: PreIssuanceLint;
      /** partitioned CRLs: each certificate names its shard's CRL instead of the full one (crl-shards.ts) */
      crlShards?: CrlShardPlan;
      /** refuses a CSR whose key is blocked (goodkey/blocked-keys.ts) */
      blockedKeys?: { check(spki: Buffer): Promise<void> };
    },
  ) {
    this.lint = deps.lint ?? new PreIssuanceLint({ log: deps.log });
    this.refuseCaSubject = (subject) => {
      const { issuing, root } = this.signingContext();
      caSubjectGuard([root.name, issuing.name])(subject);
    };
  }

  /**
   * What every certificate of the active issuer shares, encoded once per
   * issuer: a rotation (issuers.ts) swaps the whole context at once, so a
   * certificate never mixes two issuers' names, keys or links.
   */
  private signingContext(): SigningContext {
    const a = this.deps.issuers?.active() ?? { id: undefined, identity: this.deps.hierarchy.issuing, root: this.deps.hierarchy.root, links: this.deps.links };
    if (this.context?.issuing === a.identity) return this.context;
    const issuing = a.identity;
    this.context = {
      issuerId: a.id,
      issuing,
      root: a.root,
      chain: [der.pemEncode('CERTIFICATE', issuing.certificate), der.pemEncode('CERTIFICATE', a.root.certificate)],
      fixedExtensions: [ext.basicConstraintsEndEntity, ext.authorityKeyIdentifier(issuing.keyId), ext.authorityInfoAccess(a.links.ocspUrl, a.links.caIssuersUrl)],
      crlDistributionPoints: ext.crlDistributionPoints(a.links.crlUrl),
      sigAlg: keyAlgorithmInfo(issuing.signer.algorithm).signatureAlgorithm,
    };
    return this.context;
  }

  /** `body` is the parsed request body; anything but a JSON object is refused before it is looked at. */
  async issue(body: unknown, principal: Principal): Promise<IssueResponse> {
    if (!body || typeof body !== 'object' || Array.isArray(body)) {
      throw new CaError('badRequest', 'malformedJson', 'the body must be a JSON object: {"csr": PEM, "profile": name, "validityDays": n}');
    }
    const req = body as IssueRequest;
    try {
      const csr = parseCsrSync(csrFromPem(req.csr));
      await this.deps.blockedKeys?.check(csr.spki);
      const profile = this.profileOf(req.profile);
      const validityDays = validityOf(req.validityDays, profile);
      const sans = applyProfile(csr, profile);
      const intent: IssuanceIntent = { principal, profile, sans, commonNames: csr.commonNames, validityDays };
      await this.deps.policy?.check(intent);
      const subject = this.subjectOf(intent, csr);
      return await this.signAndStore(csr, subject, profile, sans, validityDays, principal);
    } catch (e) {
      if (e instanceof CaError && e.kind !== 'unavailable' && e.kind !== 'internal') await this.deps.hooks?.refused?.({ principal, error: e });
      throw e;
    }
  }

  private profileOf(name: unknown): Profile {
    if (name === undefined) name = 'tls-server';
    if (typeof name !== 'string') throw new CaError('badRequest', 'invalidProfile', 'field "profile" must be a string');
    const p = this.deps.profiles.get(name);
    if (!p) throw new CaError('badRequest', 'unknownProfile', `no profile named "${name.slice(0, 64)}" (known: ${this.deps.profiles.names().join(', ')})`);
    return p;
  }

  /** The subject the policy builds from the CSR's (the CSR's own when no policy says otherwise); never one of the CA's names. */
  private subjectOf(intent: IssuanceIntent, csr: ParsedCsr): { der: Buffer; text: string } {
    const built = this.deps.policy?.subjectFor?.(intent, csr.subject);
    const subject = built && !built.equals(csr.subject) ? { der: built, text: nameText(built) } : { der: csr.subject, text: csr.subjectText };
    this.refuseCaSubject(subject.der);
    return subject;
  }

  private async signAndStore(csr: ParsedCsr, subject: { der: Buffer; text: string }, profile: Profile, sans: Sans, validityDays: number, principal: Principal): Promise<IssueResponse> {
    const ctx = this.signingContext();
    const { issuing } = ctx;
    const now = this.deps.clock.now();
    const notBefore = new Date(Math.floor((now.getTime() - SKEW_MS) / 1000) * 1000);
    // RFC 5280 4.1.2.5: the validity period includes both ends, hence the second less.
    let notAfter = new Date(notBefore.getTime() + validityDays * DAY_MS - 1000);
    if (notAfter > issuing.notAfter) notAfter = issuing.notAfter;
    const extensions = [
      ...ctx.fixedExtensions,
      ctx.crlDistributionPoints, // replaced per serial when the CRL is partitioned
      csr.key.kind === 'rsa' ? profile.keyUsageExtension.rsa : profile.keyUsageExtension.ec,
      profile.extKeyUsageExtension,
      ext.subjectKeyIdentifier(keyIdentifier(csr.publicKeyBits)),
    ];
    const sanExt = subjectAltName(sans, subject.der);
    if (sanExt) extensions.push(sanExt);

    for (let attempt = 1; ; attempt++) {
      const serial = randomSerial();
      const serialNumber = serialHex(serial);
      const crlShard = this.deps.crlShards?.shardOf(serial);
      if (crlShard !== undefined) extensions[ctx.fixedExtensions.length] = this.deps.crlShards!.cdpExtension(crlShard);
      try {
        await this.deps.store.reserve({
          serial: serialNumber,
          profile: profile.name,
          subject: subject.text,
          sans,
          notBefore,
          notAfter,
          requesterId: principal.tokenId,
          createdAt: now,
          crlShard: crlShard ?? null,
          issuerId: ctx.issuerId,
        });
      } catch (e) {
        if (e instanceof SerialCollision && attempt < MAX_SERIAL_ATTEMPTS) continue;
        if (e instanceof SerialCollision) throw new CaError('internal', 'serialExhausted', 'could not draw an unused serial number');
        throw e;
      }
      const tbs = tbsCertificate({
        serial,
        signatureAlgorithm: ctx.sigAlg,
        issuer: issuing.name,
        notBefore,
        notAfter,
        subject: subject.der,
        spki: csr.spki,
        extensions,
      });
      let certificate: Buffer;
      try {
        await this.lint.certificate(tbs, { kind: 'subscriber', profile: profile.name, maxValidityDays: profile.maxValidityDays, issuerKeyId: issuing.keyId, warnings: profile.lintWarnings });
      } catch (e) {
        await this.deps.store.abandon(serialNumber); // the reserved row is marked failed, as after an HSM failure
        throw e;
      }
      try {
        certificate = await signCertificate(tbs, issuing.signer);
      } catch (e) {
        await this.deps.store.abandon(serialNumber);
        this.deps.log.error('the HSM failed to sign a certificate', { serial: serialNumber, error: (e as Error).message });
        throw hsmFailure(e);
      }
      const issued: Issued = { principal, serial: serialNumber, profile: profile.name, sans, subject: subject.text };
      await this.deps.store.complete(serialNumber, certificate, this.deps.hooks?.auditEvent?.(issued));
      await this.deps.hooks?.issued?.(issued);
      return {
        serialNumber,
        certificate: der.pemEncode('CERTIFICATE', certificate),
        chain: ctx.chain,
        notBefore: notBefore.toISOString(),
        notAfter: notAfter.toISOString(),
      };
    }
  }
}

export function hsmFailure(e: unknown): CaError {
  if (e instanceof CaError) return e;
  const detail = e instanceof HsmError ? e.message : 'the HSM did not answer';
  return new CaError('unavailable', 'hsmUnavailable', `the HSM is unavailable: ${detail}`);
}

function validityOf(v: unknown, profile: Profile): number {
  if (v === undefined || v === null) return profile.defaultValidityDays;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
    throw new CaError('badRequest', 'invalidValidity', 'field "validityDays" must be a whole number of days, at least 1');
  }
  if (v > profile.maxValidityDays) {
    throw new CaError('policy', 'validityTooLong', `profile ${profile.name} allows at most ${profile.maxValidityDays} days; asked for ${v}`);
  }
  return v;
}

/** The names the certificate will carry, after the profile's rules (contract section 4). */
export function applyProfile(csr: ParsedCsr, profile: Profile): Sans {
  if (csr.otherSanTypes.length) {
    throw new CaError('policy', 'sanTypeNotAllowed', `profile ${profile.name} does not carry SAN types ${csr.otherSanTypes.join(', ')}`);
  }
  const sans: Sans = {
    dns: dedupe(csr.sans.dns.map((d) => d.toLowerCase())),
    ip: dedupe(csr.sans.ip),
    email: dedupe(csr.sans.email),
    uri: dedupe(csr.sans.uri),
  };
  for (const t of ['dns', 'ip', 'email', 'uri'] as const) {
    if (sans[t].length && !profile.sanTypes.has(t)) {
      throw new CaError('policy', 'sanTypeNotAllowed', `profile ${profile.name} does not allow ${t} subject alternative names`);
    }
  }
  for (const d of sans.dns) {
    if (!validDnsName(d)) throw new CaError('policy', 'invalidDnsName', `"${d.slice(0, 80)}" is not a valid DNS name`);
  }
  for (const m of sans.email) {
    const at = m.lastIndexOf('@');
    if (at < 1 || !validDnsName(m.slice(at + 1).toLowerCase()) || /[\s<>()]/.test(m)) {
      throw new CaError('policy', 'invalidEmail', `"${m.slice(0, 80)}" is not a valid email address`);
    }
  }
  for (const u of sans.uri) {
    let ok = false;
    try {
      ok = /^[a-z][a-z0-9+.-]*:/i.test(u) && !!new URL(u);
    } catch {
      ok = false;
    }
    if (!ok) throw new CaError('policy', 'invalidUri', `"${u.slice(0, 80)}" is not a valid URI`);
  }
  const count = sans.dns.length + sans.ip.length + sans.email.length + sans.uri.length;
  if (profile.requireSan && count === 0) {
    throw new CaError('policy', 'sanRequired', `profile ${profile.name} needs at least one subject alternative name of type ${[...profile.sanTypes].join(' or ')}`);
  }
  if (count === 0 && csr.subject.length === 2) {
    throw new CaError('policy', 'nameRequired', 'the CSR has neither a subject nor a subject alternative name');
  }
  if (profile.commonNameMustBeSan) {
    for (const cn of csr.commonNames) {
      const c = cn.toLowerCase();
      const ip = ipToBytes(cn);
      const matchesIp = ip && sans.ip.some((s) => ipToBytes(s)!.equals(ip));
      if (!sans.dns.includes(c) && !matchesIp) {
        throw new CaError('policy', 'commonNameNotInSans', `the subject common name "${cn.slice(0, 64)}" must also be one of the subject alternative names`);
      }
    }
  }
  return sans;
}

function dedupe(a: string[]): string[] {
  return [...new Set(a)];
}

/** RFC 5280 4.2.1.6: critical when the subject is empty. */
function subjectAltName(sans: Sans, subject: Buffer): Buffer | undefined {
  const names: Buffer[] = [
    ...sans.dns.map((d) => der.ctx(2, Buffer.from(d, 'latin1'), false)),
    ...sans.ip.map((i) => der.ctx(7, ipToBytes(i)!, false)),
    ...sans.email.map((m) => der.ctx(1, Buffer.from(m, 'latin1'), false)),
    ...sans.uri.map((u) => der.ctx(6, Buffer.from(u, 'latin1'), false)),
  ];
  if (names.length === 0) return undefined;
  const emptySubject = subject.length === 2; // SEQUENCE {}
  return extension(OID.subjectAltName, emptySubject, der.seq(...names));
}
